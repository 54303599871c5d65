//go:build e2e

package realstack

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
)

// TestFailures checks the failure outcomes on ftp-failures, each with its
// exact code: a missing source, a wrong password, a server that is down
// (after retry.max_attempts = 3), an unknown endpoint, paths that leave the
// local base (.., a symlink) or carry CR/LF; and that nothing is written
// outside the base, nor on the FTP server from outside it.
func TestFailures(t *testing.T) {
	// A port nothing listens on: the "server down" endpoint.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	downPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	const wrongPass = "not-the-password;%x"
	extra := []config.Endpoint{
		config.FTP("wrong-password", env.VSFTPD.Host, env.VSFTPD.Port, env.VSFTPD.User, wrongPass),
		config.FTP("down-ftp", "127.0.0.1", downPort, "nobody", "nothing"),
	}

	// The base sits two levels below a directory we watch: ../../x from the
	// base lands in it.
	root := filepath.Join(env.WorkDir, unsafeName.ReplaceAllString(t.Name(), "_")+"-outside")
	must(t, os.RemoveAll(root))
	base := filepath.Join(root, "l1", "l2", "base")
	must(t, os.MkdirAll(base, 0o755))
	RemoveOnSuccess(t, root)
	secret := []byte("outside the base\n")
	must(t, os.WriteFile(filepath.Join(root, "secret.txt"), secret, 0o644))
	must(t, os.Symlink(root, filepath.Join(base, "escape")))
	s := NewStack(t, StackOptions{Endpoints: extra, LocalBase: base,
		Config: func(c *config.Config) {
			c.Retry.MaxAttempts, c.Retry.BaseBackoff, c.Retry.MaxBackoff, c.Retry.MaxOutage = 3, 200*time.Millisecond, time.Second, 3*time.Second
			c.CircuitBreaker.FailureThreshold, c.CircuitBreaker.TimeoutSeconds = 3, 1
		}})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir))
	x := []byte("x\n")
	PutFile(t, env.VSFTPD.Path(dir+"/x.txt"), x)

	passwdBefore, _, err := FileSum("/etc/passwd")
	must(t, err)
	treeBefore := Tree(root)

	cases := []struct {
		tk   Task
		code string
	}{
		{Task{TaskID: s.ID("fail-missing"), SrcID: "vsftpd", SrcPath: dir + "/no/such/file.txt", DstID: "local", DstPath: "missing.txt"}, "FILE_NOT_FOUND"},
		{Task{TaskID: s.ID("fail-auth"), SrcID: "wrong-password", SrcPath: dir + "/x.txt", DstID: "local", DstPath: "auth.txt"}, "AUTH_FAILED"},
		{Task{TaskID: s.ID("fail-down"), SrcID: "down-ftp", SrcPath: "/x.txt", DstID: "local", DstPath: "down.txt"}, "CONNECTION_ERROR"},
		{Task{TaskID: s.ID("fail-unknown-src"), SrcID: "no-such-endpoint", SrcPath: "/x.txt", DstID: "local", DstPath: "u.txt"}, "UNKNOWN_ENDPOINT"},
		{Task{TaskID: s.ID("fail-unknown-dst"), SrcID: "vsftpd", SrcPath: dir + "/x.txt", DstID: "no-such-endpoint", DstPath: "u.txt"}, "UNKNOWN_ENDPOINT"},
		{Task{TaskID: s.ID("fail-traversal-rel"), SrcID: "vsftpd", SrcPath: dir + "/x.txt", DstID: "local", DstPath: "../../etc/passwd"}, "PATH_REJECTED"},
		{Task{TaskID: s.ID("fail-traversal-abs"), SrcID: "vsftpd", SrcPath: dir + "/x.txt", DstID: "local", DstPath: "/../../etc/passwd"}, "PATH_REJECTED"},
		{Task{TaskID: s.ID("fail-traversal-mid"), SrcID: "vsftpd", SrcPath: dir + "/x.txt", DstID: "local", DstPath: "a/../../b"}, "PATH_REJECTED"},
		{Task{TaskID: s.ID("fail-traversal-src"), SrcID: "local", SrcPath: "../../../secret.txt", DstID: "vsftpd", DstPath: dir + "/stolen-dotdot.txt"}, "PATH_REJECTED"},
		{Task{TaskID: s.ID("fail-symlink-dst"), SrcID: "vsftpd", SrcPath: dir + "/x.txt", DstID: "local", DstPath: "escape/written.txt"}, "PATH_REJECTED"},
		{Task{TaskID: s.ID("fail-symlink-dst-over"), SrcID: "vsftpd", SrcPath: dir + "/x.txt", DstID: "local", DstPath: "escape/secret.txt"}, "PATH_REJECTED"},
		{Task{TaskID: s.ID("fail-symlink-src"), SrcID: "local", SrcPath: "escape/secret.txt", DstID: "vsftpd", DstPath: dir + "/stolen.txt"}, "PATH_REJECTED"},
		{Task{TaskID: s.ID("fail-crlf"), SrcID: "vsftpd", SrcPath: dir + "/x.txt\r\nDELE " + dir + "/x.txt", DstID: "local", DstPath: "crlf.txt"}, "PATH_REJECTED"},
	}
	var tasks []Task
	for _, c := range cases {
		tasks = append(tasks, c.tk)
	}
	start := time.Now()
	got := s.Run(t, 2*time.Minute, tasks...)
	t.Logf("all %d failures in %s", len(cases), time.Since(start).Round(time.Millisecond))
	for _, c := range cases {
		m := got[c.tk.TaskID]
		t.Logf("%-24s %s: %s", strings.TrimSuffix(c.tk.TaskID, "-"+s.Suffix), m.Str("error_code"), m.Str("error_message"))
		s.CheckFailure(t, m, c.tk, c.code)
		if msg := m.Str("error_message"); strings.Contains(msg, wrongPass) || strings.Contains(msg, env.VSFTPD.Pass) {
			t.Errorf("%s: error_message leaks a password: %s", c.tk.TaskID, msg)
		}
	}
	// The down server used up no attempts: its task waited, probing, until
	// the endpoint had been unreachable for retry.max_outage. The others
	// were tried once.
	down := got[s.ID("fail-down")]
	if a, _ := down.Num("attempts"); a < 4 || !strings.Contains(down.Str("error_message"), "unreachable for") ||
		!strings.Contains(down.Str("error_message"), "retry.max_outage 3s") {
		t.Errorf("fail-down: want more deliveries than retry.max_attempts 3 and \"unreachable for ... (retry.max_outage 3s)\": %s", down.Value)
	}
	for _, c := range cases {
		if c.code != "CONNECTION_ERROR" {
			if a, _ := got[c.tk.TaskID].Num("attempts"); a > 1 {
				t.Errorf("%s: %s retried (%v attempts)", c.tk.TaskID, c.code, a)
			}
		}
	}

	// Nothing written outside the base (nor inside it), /etc/passwd intact,
	// nothing uploaded from outside the base, the CRLF task ran no DELE.
	if after := Tree(root); !reflect.DeepEqual(after, treeBefore) {
		t.Errorf("files changed under %s:\n before %v\n after  %v", root, treeBefore, after)
	}
	if sum, _, _ := FileSum("/etc/passwd"); sum != passwdBefore {
		t.Errorf("/etc/passwd changed")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "secret.txt")); string(b) != string(secret) {
		t.Errorf("secret.txt changed: %q", b)
	}
	for _, p := range []string{dir + "/stolen.txt", dir + "/stolen-dotdot.txt"} {
		if _, err := os.Stat(env.VSFTPD.Path(p)); err == nil {
			t.Errorf("a file from outside the base was uploaded to %s", p)
		}
	}
	CheckFile(t, env.VSFTPD.Path(dir+"/x.txt"), Sum(x), int64(len(x)))
}
