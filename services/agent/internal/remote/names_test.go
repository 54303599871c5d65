package remote

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/ftpquirk"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// A Latin-1 server: the caller's "café" is bytes 63 61 66 e9 on its disk
// and comes back from NameList as UTF-8.
func TestQuirkLatin1Names(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := ftpquirk.Start(t, ftpquirk.NoUTF8())
	d := quirkDialer(s, config.TLSNone)
	d.Endpoint.Encoding = config.EncodingLatin1
	c := quirkDial(t, d)
	content := randomBytes(t, 10<<10)
	if err := c.MkdirAll(ctx, "/répertoire"); err != nil {
		t.Fatalf("MkdirAll: %v", err)
	}
	if err := c.Stor(ctx, "/répertoire/café.part", bytes.NewReader(content), 0); err != nil {
		t.Fatalf("Stor: %v", err)
	}
	if !bytes.Equal(onDisk(t, s, "r\xe9pertoire/caf\xe9.part"), content) {
		t.Fatal("the file named in Latin-1 differs")
	}
	if size, err := c.Size(ctx, "/répertoire/café.part"); err != nil || size != int64(len(content)) {
		t.Fatalf("Size = %d, %v", size, err)
	}
	if err := c.Rename(ctx, "/répertoire/café.part", "/répertoire/naïve"); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	if names, err := c.NameList(ctx, "/répertoire"); err != nil || !slices.Equal(names, []string{"naïve"}) {
		t.Fatalf("NameList = %q, %v", names, err)
	}
	if got := download(t, c, "/répertoire/naïve"); !bytes.Equal(got, content) {
		t.Fatal("the download differs")
	}
	if err := c.Delete(ctx, "/répertoire/naïve"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	// A name Latin-1 cannot hold must fail, not reach the server mangled.
	err := c.Stor(ctx, "/日本", strings.NewReader("x"), 0)
	if code := failure.CodeOf(err); code != failure.PathRejected {
		t.Errorf("a name outside Latin-1: %s: %v", failure.Name(code), err)
	}
}
