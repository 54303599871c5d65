// Package failure classifies why a task failed. Every failure is classified
// once, where it happens, into a stable code that says whether trying again
// can help; everything downstream (retry policy, outcome messages, metrics)
// reads the code instead of re-inspecting errors.
package failure

import (
	"errors"
	"fmt"
	"strings"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
)

// Code is a failure reason; its Name is the error_code of failure messages.
type Code = leasev1.ErrorCode

// The codes, re-exported so callers need not import the generated package.
const (
	FileNotFound      = leasev1.ErrorCode_ERROR_CODE_FILE_NOT_FOUND
	PermissionDenied  = leasev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED
	AuthFailed        = leasev1.ErrorCode_ERROR_CODE_AUTH_FAILED
	ConnectionError   = leasev1.ErrorCode_ERROR_CODE_CONNECTION_ERROR
	TransferTimeout   = leasev1.ErrorCode_ERROR_CODE_TRANSFER_TIMEOUT
	UnknownEndpoint   = leasev1.ErrorCode_ERROR_CODE_UNKNOWN_ENDPOINT
	InvalidTask       = leasev1.ErrorCode_ERROR_CODE_INVALID_TASK
	PathRejected      = leasev1.ErrorCode_ERROR_CODE_PATH_REJECTED
	IOError           = leasev1.ErrorCode_ERROR_CODE_IO_ERROR
	Cancelled         = leasev1.ErrorCode_ERROR_CODE_CANCELLED
	DestinationExists = leasev1.ErrorCode_ERROR_CODE_DESTINATION_EXISTS
	InvalidConfig     = leasev1.ErrorCode_ERROR_CODE_INVALID_CONFIG
	UnknownError      = leasev1.ErrorCode_ERROR_CODE_UNKNOWN_ERROR
)

// Name returns the code as it appears in outcome messages: FILE_NOT_FOUND.
func Name(c Code) string {
	return strings.TrimPrefix(c.String(), "ERROR_CODE_")
}

// Retryable reports whether a failure with this code may succeed when tried
// again later: the network and the servers heal, a missing file or a wrong
// password do not.
func Retryable(c Code) bool {
	switch c {
	case ConnectionError, TransferTimeout, IOError:
		return true
	default:
		return false
	}
}

// Error is a classified failure.
type Error struct {
	Code Code
	// Msg explains the failure to a human; it never holds credentials.
	Msg string
	// Err is the underlying cause, if any.
	Err error
	// Endpoint is the endpoint whose failure this is, when it is one's:
	// circuit breakers count connection failures per endpoint.
	Endpoint string
	// Unreachable marks a retryable failure to connect to or log in to
	// Endpoint: the endpoint's fault, not the task's, so it opens the
	// endpoint's breaker and does not use up the task's attempts.
	Unreachable bool
	// ServerFull marks a login Endpoint refused for being full (a
	// connection limit it enforces): the endpoint is up and the task fine.
	// Accepted is how many logged-in connections to it the agent held then.
	ServerFull bool
	Accepted   int
}

// New returns a classified failure with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Wrap classifies err under code, prefixing its text with context.
func Wrap(code Code, err error, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Err: err}
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Msg
	}
	if e.Msg == "" {
		return e.Err.Error()
	}
	return e.Msg + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether trying again may help.
func (e *Error) Retryable() bool { return Retryable(e.Code) }

// At records the endpoint the failure belongs to.
func (e *Error) At(endpoint string) *Error {
	e.Endpoint = endpoint
	return e
}

// CodeOf returns the code of the first classified failure in err's chain,
// or UnknownError when nobody classified it.
func CodeOf(err error) Code {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Code
	}
	return UnknownError
}
