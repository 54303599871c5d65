package remote

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"syscall"

	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// replyCode returns the FTP reply code carried by err, or 0.
func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// classify turns an error of operation op on path into a failure code, once,
// by the meaning of the FTP reply or the network error; anything below the
// FTP layer leaves the connection unusable. The message names the
// operation, the path and the endpoint, never the credentials.
func (c *Conn) classify(ctx context.Context, op, p string, err error) *failure.Error {
	var fe *failure.Error
	if errors.As(err, &fe) {
		return fe
	}
	return c.classifyNew(ctx, op, p, err).At(c.ep.ID)
}

func (c *Conn) classifyNew(ctx context.Context, op, p string, err error) *failure.Error {
	where := op + " " + c.String()
	if p != "" {
		where = op + " " + p + " on " + c.String()
	}
	code := replyCode(err)
	if code == 0 || code == 421 {
		c.broken.Store(true)
	}
	if ctx.Err() != nil {
		// The context ended the operation; its cause says why.
		cause := context.Cause(ctx)
		var cf *failure.Error
		switch {
		case errors.As(cause, &cf):
			return failure.New(cf.Code, "%s: %s", where, cf.Msg)
		case errors.Is(cause, context.DeadlineExceeded):
			return failure.Wrap(failure.TransferTimeout, cause, "%s", where)
		}
		return failure.Wrap(failure.Cancelled, cause, "%s", where)
	}
	if code != 0 {
		return failure.Wrap(replyFailure(op, code, err.Error()), err, "%s", where)
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) {
		return failure.Wrap(failure.InvalidConfig, err, "%s: server certificate not trusted (set tls_ca_file or tls_server_name)", where)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return failure.Wrap(failure.TransferTimeout, err, "%s: no progress for %s", where, c.idle)
	}
	if op == "log in to" && !isNetwork(err) {
		// jlaffaye reports some refusals of USER as plain errors.
		return failure.Wrap(failure.AuthFailed, err, "%s", where)
	}
	return failure.Wrap(failure.ConnectionError, err, "%s", where)
}

func isNetwork(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// replyFailure maps an FTP reply by its meaning for the operation: servers
// disagree on codes (goftp answers a missing file with 551, vsftpd with 550,
// some put "Permission denied" behind 550), so the text helps decide.
func replyFailure(op string, code int, msg string) failure.Code {
	lower := strings.ToLower(msg)
	denied := strings.Contains(lower, "permission") || strings.Contains(lower, "denied") || strings.Contains(lower, "not allowed")
	missing := strings.Contains(lower, "no such") || strings.Contains(lower, "not found") || strings.Contains(lower, "not exist") ||
		strings.Contains(lower, "not available") || strings.Contains(lower, "failed to open")
	reading := op == "RETR" || op == "SIZE"
	unavailable := code == 450 || code == 550 || code == 551
	switch {
	case code == 530 || code == 532 || code == 332:
		return failure.AuthFailed
	case code == 421 || code == 425 || code == 426:
		return failure.ConnectionError
	case unavailable && denied, code == 553:
		return failure.PermissionDenied
	case unavailable && missing:
		return failure.FileNotFound
	case code == 550 || code == 551:
		if reading {
			return failure.FileNotFound
		}
		return failure.PermissionDenied
	case code == 450 || code == 451 || code == 452 || code == 552:
		return failure.IOError
	case code >= 400 && code < 500:
		return failure.ConnectionError
	}
	return failure.UnknownError
}
