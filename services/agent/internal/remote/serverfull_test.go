package remote

import (
	"context"
	"testing"

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
