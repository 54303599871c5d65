package remote

import (
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
