package remote

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/ftpquirk"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
)

func TestAnnouncedSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line string
		want int64
	}{
		{"150 Opening BINARY mode data connection for /bench/f (20 bytes).", 20},               // vsftpd
		{"150 Opening BINARY mode data connection for f.csv (1073741824 bytes)\r", 1073741824}, // ProFTPD
		{"150 Opening BINARY mode data connection for x (5 bytes) (20 bytes).", 20},            // the name says it too
		{"150 Opening BINARY mode data connection for y (5 bytes).txt (0 bytes).", 0},
		{"150 Opening BINARY mode data connection for x (lots bytes).", -1},
		{"150 Opening BINARY mode data connection for x (-3 bytes).", -1},
		{"150 20.0 kbytes to download", -1},                          // pure-ftpd
		{"125 Data connection already open; Transfer starting.", -1}, // IIS
		{"150 Data transfer starting 20 bytes", -1},
		{"", -1},
	} {
		if got := announcedSize([]byte(tc.line)); got != tc.want {
			t.Errorf("announcedSize(%q) = %d, want %d", tc.line, got, tc.want)
		}
	}
}

// The tap finds the size in whatever pieces the reads return, in single-
// and multi-line 1xx replies, and in no other reply.
func TestReplyTap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, stream string
		want         int64
	}{
		{"single line", "229 Entering Extended Passive Mode (|||40001|)\r\n150 Opening BINARY mode data connection for f (42 bytes).\r\n", 42},
		{"multi-line", "150-ftpquirk says:\r\n this line has no code\r\n150 Opening BINARY mode data connection for f (7 bytes).\r\n", 7},
		{"size on the first line of a multi-line reply", "150-Opening for f (9 bytes)\r\n150 go\r\n", 9},
		{"not in a preliminary reply", "226 Transfer complete (42 bytes).\r\n", -1},
		{"after a multi-line reply ended", "150-a\r\n150 b\r\n226 done (3 bytes)\r\n", -1},
		{"an unfinished line", "150 Opening BINARY mode data connection for f (42 bytes).", -1},
		{"a line longer than the limit", "150 " + strings.Repeat("x", maxReplyLine) + " (42 bytes).\r\n150 short\r\n", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, piece := range []int{1, 3, 1 << 20} {
				tap := newReplyTap()
				for b := []byte(tc.stream); len(b) > 0; {
					n := min(piece, len(b))
					tap.feed(b[:n])
					b = b[n:]
				}
				if got := tap.announced(); got != tc.want {
					t.Errorf("read %d bytes at a time: announced %d, want %d", piece, got, tc.want)
				}
				tap.reset()
				if got := tap.announced(); got != -1 {
					t.Errorf("announced %d after reset", got)
				}
			}
		})
	}
}

// A server that announces sizes: a whole-file download says how large the
// file is and the endpoint learns that SIZE can be skipped; one from an
// offset does not use the figure (servers disagree on what it counts).
// Under TLS the control connection cannot read the replies.
func TestRetrAnnouncesSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []ftpquirk.Option
		mode config.TLSMode
		want bool
	}{
		{"plain", nil, config.TLSNone, true},
		{"multi-line replies", []ftpquirk.Option{ftpquirk.MultiLineReplies()}, config.TLSNone, true},
		{"explicit TLS", []ftpquirk.Option{ftpquirk.ExplicitTLS()}, config.TLSExplicit, false},
		{"no size in the reply", []ftpquirk.Option{ftpquirk.NoRETRSize()}, config.TLSNone, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := ftpquirk.Start(t, tc.opts...)
			data := randomBytes(t, 12345)
			if err := os.WriteFile(filepath.Join(s.Root(), "f"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			c := quirkDial(t, quirkDialer(s, tc.mode))
			if c.AnnouncesSize() {
				t.Fatal("AnnouncesSize before any download")
			}
			r, err := c.Retr(context.Background(), "/f", 0)
			if err != nil {
				t.Fatal(err)
			}
			got := readAllClose(t, r)
			if !bytes.Equal(got, data) {
				t.Fatalf("downloaded %d bytes, want %d", len(got), len(data))
			}
			wantSize := int64(-1)
			if tc.want {
				wantSize = int64(len(data))
			}
			if r.Announced != wantSize || c.AnnouncesSize() != tc.want {
				t.Fatalf("Announced %d, AnnouncesSize %v; want %d, %v", r.Announced, c.AnnouncesSize(), wantSize, tc.want)
			}
			r, err = c.Retr(context.Background(), "/f", 100)
			if err != nil {
				t.Fatal(err)
			}
			if got := readAllClose(t, r); !bytes.Equal(got, data[100:]) || r.Announced != -1 {
				t.Fatalf("from offset 100: %d bytes, Announced %d; want %d, -1", len(got), r.Announced, len(data)-100)
			}
		})
	}
}

func readAllClose(t *testing.T, r *Download) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		_ = r.Close()
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return b
}
