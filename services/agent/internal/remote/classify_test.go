package remote

import (
	"errors"
	"net/textproto"
	"testing"

	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

func TestReplyFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		op   string
		code int
		msg  string
		want failure.Code
	}{
		{"RETR", 550, "Failed to open file.", failure.FileNotFound},             // vsftpd
		{"SIZE", 550, "Could not get file size.", failure.FileNotFound},         // vsftpd
		{"RETR", 551, "File not available", failure.FileNotFound},               // goftp
		{"SIZE", 450, `path /no/such/file.txt not found`, failure.FileNotFound}, // goftp
		{"RETR", 550, "Permission denied.", failure.PermissionDenied},
		{"STOR", 550, "Permission denied.", failure.PermissionDenied},
		{"STOR", 553, "Could not create file.", failure.PermissionDenied},
		{"STOR", 550, "Can't open dir: No such file or directory", failure.FileNotFound},
		{"log in to", 530, "Login incorrect.", failure.AuthFailed},
		{"STOR", 421, "Timeout.", failure.ConnectionError},
		{"RETR", 425, "Failed to establish connection.", failure.ConnectionError},
		{"RETR", 426, "Failure writing network stream.", failure.ConnectionError},
		{"STOR", 452, "Insufficient storage space", failure.IOError},
		{"STOR", 552, "Exceeded storage allocation", failure.IOError},
		{"STOR", 451, "Local error in processing", failure.IOError},
		{"NOOP", 500, "Unknown command.", failure.UnknownError},
	}
	for _, tc := range tests {
		if got := replyFailure(tc.op, tc.code, tc.msg); got != tc.want {
			t.Errorf("%s %d %q = %s, want %s", tc.op, tc.code, tc.msg, failure.Name(got), failure.Name(tc.want))
		}
	}
}

// The ways servers say they are full, as they say them; and refusals that
// are not about a limit.
func TestRefusedAsFull(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code int
		msg  string
		full bool
	}{
		{530, "Sorry, the maximum number of clients (3) for this user are already connected.", true},  // ProFTPD MaxClientsPerUser
		{530, "Sorry, the maximum number of clients (3) from your host are already connected.", true}, // ProFTPD MaxClientsPerHost
		{421, "There are too many connected users, please try later.", true},                          // vsftpd max_clients
		{421, "There are too many connections from your internet address.", true},                     // vsftpd max_per_ip
		{421, "I can't accept more than 4 connections as the same user", true},                        // pure-ftpd -y
		{421, "Too many connections. Service temporarily unavailable.", true},                         // pyftpdlib max_cons
		{421, "Too many connections from the same IP address.", true},                                 // pyftpdlib max_cons_per_ip
		{421, "Maximum login limit has been reached.", true},                                          // Apache FtpServer
		{530, "Login incorrect.", false},
		{530, "Login authentication failed", false},
		{421, "Service not available, closing control connection.", false},
		{550, "Too many files", false},                     // not a login refusal code
		{0, "Maximum login limit has been reached.", true}, // Apache FtpServer at USER, code dropped by jlaffaye
		{0, "User cannot log in.", false},                  // a refused USER
	}
	for _, tc := range tests {
		var err error = &textproto.Error{Code: tc.code, Msg: tc.msg}
		if tc.code == 0 {
			err = errors.New(tc.msg) // jlaffaye's refusal of USER
		}
		if got := refusedAsFull(err); got != tc.full {
			t.Errorf("%d %q: full = %v, want %v", tc.code, tc.msg, got, tc.full)
		}
	}
}
