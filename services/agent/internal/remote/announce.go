package remote

import (
	"bytes"
	"strconv"
	"sync"
)

// Most servers say in RETR's preliminary reply how large the file they are
// about to send is: "150 Opening BINARY mode data connection for f (20
// bytes)." (vsftpd, ProFTPD). Where they do, a download needs no SIZE
// before it, one round trip fewer per file; jlaffaye drops that reply's
// text, so the control connection keeps it (replyTap).
//
// At an offset the figure is ambiguous (vsftpd gives the file's size,
// ProFTPD what is left to send), so only whole-file downloads use it.

// replyTap keeps the size the last preliminary (1xx) reply read from a
// plain control connection announced, single- or multi-line. Feeds and
// resets come from the connection's one user at a time; the mutex only
// keeps the race detector honest about interrupt.
type replyTap struct {
	mu       sync.Mutex
	line     []byte // the line being read, up to maxReplyLine
	overflow bool   // the line being read is longer than that
	// open is the code of a multi-line 1xx reply not yet ended ("150").
	open []byte
	size int64 // announced since the last reset, or -1
}

const maxReplyLine = 1024

func newReplyTap() *replyTap { return &replyTap{size: -1} }

// feed takes the bytes a Read returned.
func (t *replyTap) feed(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if len(t.line)+len(chunk) > maxReplyLine {
			t.overflow = true
		} else if !t.overflow {
			t.line = append(t.line, chunk...)
		}
		if i < 0 {
			return
		}
		if !t.overflow {
			t.replyLine(t.line)
		}
		t.line, t.overflow = t.line[:0], false
		b = b[i+1:]
	}
}

// replyLine looks at one whole line: inside a 1xx reply, for a size.
func (t *replyTap) replyLine(line []byte) {
	switch {
	case t.open != nil: // a continuation, or the end, of a multi-line 1xx
		if len(line) >= 4 && bytes.Equal(line[:3], t.open) && line[3] == ' ' {
			t.open = nil
		}
	case len(line) >= 4 && line[0] == '1' && isDigit(line[1]) && isDigit(line[2]) && (line[3] == ' ' || line[3] == '-'):
		if line[3] == '-' {
			t.open = append([]byte{}, line[:3]...)
		}
	default:
		return
	}
	if n := announcedSize(line); n >= 0 {
		t.size = n
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// reset forgets what was announced, before a command whose own reply is
// wanted.
func (t *replyTap) reset() {
	t.mu.Lock()
	t.size, t.open = -1, nil
	t.mu.Unlock()
}

// announced is the size announced since the last reset, or -1.
func (t *replyTap) announced() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.size
}

// announcedSize finds "(N bytes)" in a reply line, the last one, since the
// file's name comes before it and may hold the same words; -1 without one.
func announcedSize(line []byte) int64 {
	line = bytes.TrimRight(line, "\r")
	for end := len(line); end > 0; {
		i := bytes.LastIndex(line[:end], []byte(" bytes)"))
		if i < 0 {
			return -1
		}
		open := bytes.LastIndexByte(line[:i], '(')
		if open >= 0 {
			if n, err := strconv.ParseInt(string(line[open+1:i]), 10, 64); err == nil && n >= 0 {
				return n
			}
		}
		end = i
	}
	return -1
}
