package remote

import (
	"strings"

	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// Names travel as bytes on the control channel. Tasks name files in UTF-8;
// a server without UTF-8 (encoding = latin-1) names them in ISO-8859-1,
// one byte a character, so "café" is 63 61 66 e9 on its disk.

// wire returns p as the endpoint's server names it.
func (c *Conn) wire(p string) (string, error) {
	if c.ep.Encoding != config.EncodingLatin1 {
		return p, nil
	}
	var b strings.Builder
	b.Grow(len(p))
	for _, r := range p {
		if r > 0xff {
			return "", failure.New(failure.PathRejected, "%s on %s: %q cannot be written in Latin-1 (encoding = latin-1)", p, c, r).At(c.ep.ID)
		}
		b.WriteByte(byte(r))
	}
	return b.String(), nil
}

// unwire turns a name the server sent back into UTF-8.
func (c *Conn) unwire(name string) string {
	if c.ep.Encoding != config.EncodingLatin1 {
		return name
	}
	var b strings.Builder
	b.Grow(len(name) + len(name)/4)
	for i := range len(name) {
		b.WriteRune(rune(name[i]))
	}
	return b.String()
}
