package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jlaffaye/ftp"
)

// ftpMover copies with a 1 MiB buffer: a default io.Copy from jlaffaye's
// response leaves half of loopback's bandwidth unused.
type ftpMover struct {
	c   *ftp.ServerConn
	buf []byte
}

func dialFTP(o options) ([]mover, func(), error) {
	var cs []*ftp.ServerConn
	closeAll := func() {
		for _, c := range cs {
			_ = c.Quit()
		}
	}
	var ms []mover
	for range o.conns {
		c, err := ftp.Dial(o.addr, ftp.DialWithTimeout(10*time.Second))
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("connect: %w", err)
		}
		cs = append(cs, c)
		if err := c.Login(o.user, o.pass); err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("login: %w", err)
		}
		ms = append(ms, &ftpMover{c: c, buf: make([]byte, 1<<20)})
	}
	return ms, closeAll, nil
}

func (m *ftpMover) move(p pair, put bool) (int64, error) {
	if put {
		f, err := os.Open(p.local)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return 0, err
		}
		return st.Size(), m.c.Stor(p.remote, f)
	}
	resp, err := m.c.Retr(p.remote)
	if err != nil {
		return 0, err
	}
	f, err := os.Create(p.local)
	if err != nil {
		resp.Close()
		return 0, err
	}
	n, err := io.CopyBuffer(writerOnly{f}, resp, m.buf)
	if cerr := resp.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// writerOnly hides os.File's ReadFrom, which would ignore our buffer.
type writerOnly struct{ io.Writer }
