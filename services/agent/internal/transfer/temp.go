package transfer

import (
	"fmt"
	"io"
	"path"
)

// What every destination kind shares: the temporary names deliveries write
// under, and counting the bytes that pass.

// tempName is a hidden sibling of final that names its delivery, so two
// deliveries never share one and stale ones are recognisable.
func tempName(final string, token uint64, suffix string) string {
	return fmt.Sprintf("%s%d.ftp-pooler.%s", path.Join(path.Dir(final), tempPrefix(final)), token, suffix)
}

// tempPrefix is the part of a temporary name shared by every delivery of
// final: "." + base name (cut to keep the name within 255 bytes) + ".".
func tempPrefix(final string) string {
	base := path.Base(final)
	const keep = 180
	if len(base) > keep {
		cut := keep
		for cut > 0 && !isRuneStart(base[cut]) {
			cut--
		}
		base = base[:cut]
	}
	return "." + base + "."
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// counting reports bytes read as they pass.
type counting struct {
	r   io.Reader
	add func(int64)
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.add(int64(n))
	}
	return n, err
}

// countingWriter reports bytes written as they pass, for sources that
// write themselves out (io.WriterTo).
type countingWriter struct {
	w   io.Writer
	add func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if n > 0 {
		c.add(int64(n))
	}
	return n, err
}
