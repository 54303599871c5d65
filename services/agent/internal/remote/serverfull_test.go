package remote

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/ftpquirk"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// dialFull fills s's only slot and returns the error of one more Dial.
func dialFull(t *testing.T, s *ftpquirk.Server) error {
	t.Helper()
	d := quirkDialer(s, config.TLSNone)
	quirkDial(t, d)
	c, err := d.Dial(context.Background())
	if err == nil {
		_ = c.Close()
		t.Fatal("Dial to a full server succeeded")
	}
	return err
}

// vsftpd max_clients, pure-ftpd: 421 instead of the banner.
func TestQuirkServerFullAt421(t *testing.T) {
	t.Parallel()
	err := dialFull(t, ftpquirk.Start(t, ftpquirk.MaxConnections(1, ftpquirk.RefuseAtBanner)))
	if code := failure.CodeOf(err); code != failure.ConnectionError || !IsServerFull(err) {
		t.Errorf("421 Too many users: %s, server full %v: %v", failure.Name(code), IsServerFull(err), err)
	}
}

// ProFTPD MaxClientsPerUser: 530 after PASS, which by its code alone is a
// wrong password.
func TestQuirkServerFullAt530(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.MaxConnections(1, ftpquirk.RefuseAtLogin))
	err := dialFull(t, s)
	if code := failure.CodeOf(err); code != failure.ConnectionError || !IsServerFull(err) {
		t.Errorf("530 maximum number of clients: %s, server full %v: %v", failure.Name(code), IsServerFull(err), err)
	}

	// A plain 530 is still a wrong password.
	d := quirkDialer(s, config.TLSNone)
	d.Endpoint.Password = "wrong"
	c, err := d.Dial(context.Background())
	if err == nil {
		_ = c.Close()
		t.Fatal("Dial with a wrong password succeeded")
	}
	if code := failure.CodeOf(err); code != failure.AuthFailed || IsServerFull(err) {
		t.Errorf("530 Login incorrect: %s, server full %v: %v", failure.Name(code), IsServerFull(err), err)
	}
}

// A login the lease's context ends, with a failure as its cause, is that
// failure: it carries no server reply, which the server-full check must not
// read (it panicked on a nil reply in the chaos suite).
func TestLoginEndedByTheContextsCause(t *testing.T) {
	s := ftpquirk.Start(t, ftpquirk.BannerDelay(2*time.Second))
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(100*time.Millisecond, func() { cancel(failure.New(failure.ConnectionError, "lease taken back")) })
	_, err := quirkDialer(s, config.TLSNone).Dial(ctx)
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Code != failure.ConnectionError || fe.ServerFull {
		t.Fatalf("Dial = %v, want the cause's CONNECTION_ERROR, not server-full", err)
	}
}
