package sftpremote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/pkg/sftp"

	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// Every SSH and SFTP error is classified here, once.

// classifyDial classifies a failure to connect, handshake or log in. A
// server that is down, refuses, resets or drops the connection before the
// login (OpenSSH's MaxStartups does that) is unreachable: retried later
// without using an attempt, like an FTP outage.
func classifyDial(o Options, err error) error {
	addr := o.Addr
	var hke *HostKeyError
	switch {
	case errors.As(err, &hke):
		return failure.Wrap(failure.InvalidConfig, err, "connect to sftp://%s", addr).At(o.Endpoint)
	case isNoCommonHostKey(err):
		return failure.Wrap(failure.InvalidConfig, err, "connect to sftp://%s: the server offers no host key of the types known for it", addr).At(o.Endpoint)
	case isAuthRefused(err):
		return failure.Wrap(failure.AuthFailed, err, "log in to sftp://%s as %s", addr, o.User).At(o.Endpoint)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded) && !isTimeout(err):
		return failure.Wrap(failure.Cancelled, err, "connect to sftp://%s", addr)
	}
	fe := failure.Wrap(failure.ConnectionError, err, "connect to sftp://%s", addr).At(o.Endpoint)
	if isTimeout(err) {
		fe.Msg += ": no answer in time"
	}
	fe.Unreachable = true
	return fe
}

func invalidConfig(o Options, err error) error {
	return failure.Wrap(failure.InvalidConfig, err, "sftp://%s", o.Addr).At(o.Endpoint)
}

// isNoCommonHostKey: the server has no key of the types asked for.
func isNoCommonHostKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no common algorithm for host key")
}

// isAuthRefused: x/crypto/ssh reports a refused login only in words.
func isAuthRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unable to authenticate")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isConnectionLoss reports whether err means the session or its connection
// is gone, not that one request failed.
func isConnectionLoss(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, errHung) ||
		errors.Is(err, syscall.EPIPE)
}

// classifyOp classifies a failed call on a session; nil stays nil.
func classifyOp(c *Conn, op, p string, err error) error {
	if err == nil {
		return nil
	}
	var fe *failure.Error
	if errors.As(err, &fe) {
		return err
	}
	what := fmt.Sprintf("%s %s on %s", op, p, c)
	if p == "" {
		what = fmt.Sprintf("%s %s", op, c)
	}
	var code failure.Code
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = failure.Cancelled
	case errors.Is(err, errHung):
		code = failure.TransferTimeout
	case errors.Is(err, os.ErrNotExist):
		code = failure.FileNotFound
	case errors.Is(err, os.ErrPermission):
		code = failure.PermissionDenied
	case isConnectionLoss(err) || c.Broken():
		code = failure.ConnectionError
	default:
		code = failure.IOError
	}
	return failure.Wrap(code, err, "%s", what).At(c.opts.Endpoint)
}
