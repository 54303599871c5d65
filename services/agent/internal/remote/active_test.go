package remote

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/ftpquirk"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// A server (or its firewall) that allows active mode only: every operation
// works with passive = false, and fails without it.
func TestQuirkActiveMode(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.ActiveOnly())
	d := quirkDialer(s, config.TLSNone)
	d.Endpoint.Active = true
	c := quirkDial(t, d)
	roundTrip(t, s, c, "/in", 100<<10, true)
	if s.CommandCount("PORT")+s.CommandCount("EPRT") == 0 {
		t.Error("no PORT or EPRT was sent")
	}
	if n := s.CommandCount("PASV") + s.CommandCount("EPSV"); n != 0 {
		t.Errorf("%d PASV/EPSV reached the server in active mode", n)
	}
	ctx := context.Background()
	// An empty upload: the server's data connection is taken and closed.
	if err := c.Stor(ctx, "/in/empty", bytes.NewReader(nil), 0); err != nil {
		t.Fatalf("empty upload in active mode: %v", err)
	}
	if got := onDisk(t, s, "in/empty"); len(got) != 0 {
		t.Fatalf("empty upload left %d bytes", len(got))
	}
	// A refused command does not wait for a connection that never comes.
	start := time.Now()
	_, err := c.Retr(ctx, "/in/missing", 0)
	if code := failure.CodeOf(err); code != failure.FileNotFound {
		t.Fatalf("RETR of a missing file in active mode: %s: %v", failure.Name(code), err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("a refused RETR took %s", took)
	}
	if c.Broken() {
		t.Fatal("a refused RETR broke the connection")
	}
	if names, err := c.NameList(ctx, "/in"); err != nil || len(names) == 0 {
		t.Fatalf("NameList after the refusal: %q, %v", names, err)
	}

	// The same server without passive = false: PASV is refused.
	plain := quirkDial(t, quirkDialer(s, config.TLSNone))
	err = plain.Stor(ctx, "/in/f", strings.NewReader("x"), 0)
	if err == nil || !strings.Contains(err.Error(), "Passive mode not allowed") {
		t.Fatalf("passive upload to an active-only server: %v", err)
	}
}
