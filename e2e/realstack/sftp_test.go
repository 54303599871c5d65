//go:build e2e

package realstack

import (
	"context"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
)

// The SFTP servers scripts/e2e/sftpd.sh runs: OpenSSH's sshd (chrooted,
// posix-rename, a password user and a key user) and ProFTPD's mod_sftp
// (posix-rename turned off, so replacing a file takes the remove-then-rename
// path).
func sftpServers(t *testing.T) (openssh, proftpd stack.SFTPServer) {
	t.Helper()
	if os.Getenv("E2E_SFTP") == "0" {
		t.Skip("E2E_SFTP=0: the SFTP servers are not running")
	}
	openssh, proftpd, err := env.SFTPServers()
	if err != nil {
		t.Fatal(err)
	}
	return openssh, proftpd
}

// sftpEndpoints are connections.ini sections for both servers, and for
// OpenSSH's key user.
func sftpEndpoints(openssh, proftpd stack.SFTPServer) []config.Endpoint {
	key := openssh.Endpoint("openssh-key")
	key.User, key.Pass, key.KeyFile = openssh.KeyUser, "", openssh.KeyFile
	return []config.Endpoint{openssh.Endpoint("openssh"), key, proftpd.Endpoint("proftpd")}
}

// sftpDirectionEndpoints are sftpEndpoints configured as README's
// connections.ini table says for each server: ProFTPD's mod_sftp with
// max_sessions_per_connection = 1 (the agent runs one session per
// connection there, proftpd#1897) and proftpdConns connections, so the
// dispatchers lease it only what the agent runs. A copy within ProFTPD
// holds two of them.
func sftpDirectionEndpoints(openssh, proftpd stack.SFTPServer, proftpdConns int) []config.Endpoint {
	eps := sftpEndpoints(openssh, proftpd)
	for i := range eps {
		if eps[i].ID == "proftpd" {
			eps[i].MaxConnections, eps[i].MaxSessionsPerConnection = proftpdConns, 1
		}
	}
	return eps
}

// sftpSide is an endpoint as the direction tests use it: this stack's
// directory on it as tasks name it, and where its paths lie on disk.
type sftpSide struct {
	dir  string
	disk func(string) string
}

// path is name in the stack's directory, as a task names it.
func (e sftpSide) path(name string) string { return path.Join(e.dir, name) }

// file is where path(name) lies on disk.
func (e sftpSide) file(name string) string { return e.disk(e.path(name)) }

// sftpSides are the endpoints sftpDirections move files between, by id.
// OpenSSH's chroot is root's; its users write under /upload.
func sftpSides(s *Stack, openssh, proftpd stack.SFTPServer) map[string]sftpSide {
	dir := s.FTPDir()
	return map[string]sftpSide{
		"local":   {"io", func(p string) string { return filepath.Join(s.Base, filepath.FromSlash(p)) }},
		"openssh": {"/upload" + dir, openssh.Path},
		"proftpd": {dir, proftpd.Path},
		"vsftpd":  {dir, env.VSFTPD.Path},
	}
}

// sftpDirection is a way files move: a task name and its endpoints.
type sftpDirection struct{ name, src, dst string }

// sftpDirections are the ways files move with SFTP on one side or both:
// from and to local storage, from and to FTP, across the two SFTP servers
// both ways, and within each server (a copy within ProFTPD takes two of
// its connections, one session each).
var sftpDirections = []sftpDirection{
	{"sftp-local", "openssh", "local"},
	{"local-sftp", "local", "openssh"},
	{"sftp-ftp", "openssh", "vsftpd"},
	{"ftp-sftp", "vsftpd", "openssh"},
	{"openssh-proftpd", "openssh", "proftpd"},
	{"proftpd-openssh", "proftpd", "openssh"},
	{"openssh-same", "openssh", "openssh"},
	{"proftpd-same", "proftpd", "proftpd"},
}

// sftpSourceIDs are the endpoints sftpDirections read from, each once.
func sftpSourceIDs() []string {
	var ids []string
	for _, d := range sftpDirections {
		if !slices.Contains(ids, d.src) {
			ids = append(ids, d.src)
		}
	}
	return ids
}

// sftpCheck is a task and the file it must leave: where on disk, its
// sha256 and size.
type sftpCheck struct {
	tk        Task
	path, sum string
	size      int64
}

// directionChecks is a task for each of sftpDirections moving src/<name>
// (size bytes, sha256 sums[source endpoint]) to from-<source>/<name> on
// the destination.
func directionChecks(s *Stack, sides map[string]sftpSide, name string, size int64, sums map[string]string) []sftpCheck {
	var checks []sftpCheck
	for _, d := range sftpDirections {
		src, dst := sides[d.src], sides[d.dst]
		out := "from-" + d.src + "/" + name
		checks = append(checks, sftpCheck{
			tk: Task{TaskID: s.ID(d.name + "-" + strings.TrimSuffix(name, ".bin")), SrcID: d.src, SrcPath: src.path("src/" + name),
				DstID: d.dst, DstPath: dst.path(out)},
			path: dst.file(out), sum: sums[d.src], size: size,
		})
	}
	return checks
}

// TestSFTPDirections moves files in every direction SFTP mixes with FTP
// and local storage (sftpDirections, empty and 1 MiB files; 1 GiB in
// TestSFTPDirectionsLarge), with sha256 checked on both sides, and more:
// 64 MiB, a size off every block boundary, names with spaces and Unicode,
// new nested directories, the key user.
func TestSFTPDirections(t *testing.T) {
	openssh, proftpd := sftpServers(t)
	s := NewStack(t, StackOptions{Endpoints: sftpDirectionEndpoints(openssh, proftpd, 10)})
	dir := s.FTPDir()
	up := "/upload" + dir // OpenSSH's chroot is root's; its users write under /upload
	keyDir := "/upload/key-" + s.Suffix + "-" + s.Name
	RemoveOnSuccess(t, openssh.Path(up), openssh.Path(keyDir), proftpd.Path(dir), env.VSFTPD.Path(dir))

	const mib = 1 << 20
	sums := map[string]string{
		"empty": PutFile(t, filepath.Join(s.Base, "out/empty"), nil),
		"1MiB":  PutRandomFile(t, filepath.Join(s.Base, "out/1MiB.bin"), mib, 11),
		"64MiB": PutRandomFile(t, filepath.Join(s.Base, "out/64MiB.bin"), 64*mib, 12),
	}
	remoteSum := PutRandomFile(t, openssh.Path(up+"/src/r.bin"), 3*mib+17, 13)
	ftpSum := PutRandomFile(t, env.VSFTPD.Path(dir+"/src/f.bin"), mib+5, 14)
	unicode := up + "/new/deep er/dïr ü/ファイル 1.bin"
	checks := []sftpCheck{
		{Task{TaskID: s.ID("up-empty"), SrcID: "local", SrcPath: "out/empty", DstID: "openssh", DstPath: up + "/a/empty"}, openssh.Path(up + "/a/empty"), sums["empty"], 0},
		{Task{TaskID: s.ID("up-1m"), SrcID: "local", SrcPath: "out/1MiB.bin", DstID: "openssh", DstPath: unicode}, openssh.Path(unicode), sums["1MiB"], mib},
		{Task{TaskID: s.ID("up-64m"), SrcID: "local", SrcPath: "out/64MiB.bin", DstID: "openssh", DstPath: up + "/a/64MiB.bin"}, openssh.Path(up + "/a/64MiB.bin"), sums["64MiB"], 64 * mib},
		// The key user has a directory of its own: sftpuser's are not
		// writable by others.
		{Task{TaskID: s.ID("up-key"), SrcID: "local", SrcPath: "out/1MiB.bin", DstID: "openssh-key", DstPath: keyDir + "/1MiB.bin"}, openssh.Path(keyDir + "/1MiB.bin"), sums["1MiB"], mib},
		{Task{TaskID: s.ID("up-proftpd"), SrcID: "local", SrcPath: "out/64MiB.bin", DstID: "proftpd", DstPath: dir + "/p/64MiB.bin"}, proftpd.Path(dir + "/p/64MiB.bin"), sums["64MiB"], 64 * mib},
		{Task{TaskID: s.ID("down"), SrcID: "openssh", SrcPath: up + "/src/r.bin", DstID: "local", DstPath: "in/r.bin"}, filepath.Join(s.Base, "in/r.bin"), remoteSum, 3*mib + 17},
		{Task{TaskID: s.ID("sftp-sftp"), SrcID: "openssh", SrcPath: up + "/src/r.bin", DstID: "proftpd", DstPath: dir + "/from-openssh/r.bin"}, proftpd.Path(dir + "/from-openssh/r.bin"), remoteSum, 3*mib + 17},
		{Task{TaskID: s.ID("sftp-same"), SrcID: "openssh", SrcPath: up + "/src/r.bin", DstID: "openssh", DstPath: up + "/copy/r.bin"}, openssh.Path(up + "/copy/r.bin"), remoteSum, 3*mib + 17},
		{Task{TaskID: s.ID("ftp-sftp"), SrcID: "vsftpd", SrcPath: dir + "/src/f.bin", DstID: "openssh", DstPath: up + "/from-ftp/f.bin"}, openssh.Path(up + "/from-ftp/f.bin"), ftpSum, mib + 5},
		{Task{TaskID: s.ID("sftp-ftp"), SrcID: "openssh", SrcPath: up + "/src/r.bin", DstID: "vsftpd", DstPath: dir + "/from-sftp/r.bin"}, env.VSFTPD.Path(dir + "/from-sftp/r.bin"), remoteSum, 3*mib + 17},
	}
	// Every direction with an empty and a 1 MiB file. Each source endpoint
	// has bytes of its own: a transfer that read the wrong one shows.
	sides := sftpSides(s, openssh, proftpd)
	for i, f := range []struct {
		name string
		size int64
	}{{"empty", 0}, {"1MiB.bin", mib}} {
		srcSums := map[string]string{}
		for j, id := range sftpSourceIDs() {
			srcSums[id] = PutRandomFile(t, sides[id].file("src/"+f.name), f.size, uint64(100+10*i+j))
		}
		checks = append(checks, directionChecks(s, sides, f.name, f.size, srcSums)...)
	}
	var tasks []Task
	for _, c := range checks {
		tasks = append(tasks, c.tk)
	}
	got := s.Run(t, 3*time.Minute, tasks...)
	for _, c := range checks {
		s.CheckSuccess(t, got[c.tk.TaskID], c.tk, c.size)
		CheckFile(t, c.path, c.sum, c.size)
	}
	// Written by the SFTP users, not by root behind the servers' backs.
	uid, _ := owner(t, openssh.Path("/upload"))
	if u, _ := owner(t, openssh.Path(up+"/a/64MiB.bin")); u != uid {
		t.Errorf("uploaded file owned by uid %d, want the SFTP user's %d", u, uid)
	}
	for _, d := range []string{openssh.Path(up), proftpd.Path(dir), env.VSFTPD.Path(dir), s.Base} {
		if tmp := TempFiles(d); len(tmp) > 0 {
			t.Errorf("temporary files left: %v", tmp)
		}
	}
}

// TestSFTPOverwrite replaces existing files on both servers: atomically
// with posix-rename on OpenSSH, by remove-then-rename on ProFTPD (which
// does not offer it), and refuses with overwrite: false.
func TestSFTPOverwrite(t *testing.T) {
	openssh, proftpd := sftpServers(t)
	s := NewStack(t, StackOptions{Endpoints: sftpEndpoints(openssh, proftpd)})
	dir := s.FTPDir()
	up := "/upload" + dir
	RemoveOnSuccess(t, openssh.Path(up), proftpd.Path(dir))
	newSum := PutFile(t, filepath.Join(s.Base, "new.txt"), []byte("new contents\n"))
	oldSum := PutFile(t, openssh.Path(up+"/keep.txt"), []byte("old\n"))
	PutFile(t, openssh.Path(up+"/replace.txt"), []byte("old\n"))
	PutFile(t, proftpd.Path(dir+"/replace.txt"), []byte("old\n"))
	keep := Task{TaskID: s.ID("keep"), SrcID: "local", SrcPath: "new.txt", DstID: "openssh", DstPath: up + "/keep.txt",
		Extra: map[string]any{"overwrite": false}}
	tasks := []Task{
		{TaskID: s.ID("replace-openssh"), SrcID: "local", SrcPath: "new.txt", DstID: "openssh", DstPath: up + "/replace.txt"},
		{TaskID: s.ID("replace-proftpd"), SrcID: "local", SrcPath: "new.txt", DstID: "proftpd", DstPath: dir + "/replace.txt"},
		keep,
	}
	got := s.Run(t, time.Minute, tasks...)
	s.CheckSuccess(t, got[tasks[0].TaskID], tasks[0], 13)
	s.CheckSuccess(t, got[tasks[1].TaskID], tasks[1], 13)
	s.CheckFailure(t, got[keep.TaskID], keep, "DESTINATION_EXISTS")
	CheckFile(t, openssh.Path(up+"/replace.txt"), newSum, 13)
	CheckFile(t, proftpd.Path(dir+"/replace.txt"), newSum, 13)
	CheckFile(t, openssh.Path(up+"/keep.txt"), oldSum, 4)
	for _, d := range []string{openssh.Path(up), proftpd.Path(dir)} {
		if tmp := TempFiles(d); len(tmp) > 0 {
			t.Errorf("temporary files left: %v", tmp)
		}
	}
}

// TestSFTPFailures: each failure gets its code, once; a server that is down
// uses no attempts; a changed host key names what the server offered.
func TestSFTPFailures(t *testing.T) {
	openssh, proftpd := sftpServers(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	downAddr := l.Addr().String()
	l.Close()
	// known_hosts naming OpenSSH's address with ProFTPD's key: a server
	// whose key changed.
	hosts, err := os.ReadFile(openssh.KnownHosts)
	must(t, err)
	var wrong []string
	for _, line := range strings.Split(string(hosts), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "["+strings.Replace(proftpd.Addr, ":", "]:", 1) {
			wrong = append(wrong, "["+strings.Replace(openssh.Addr, ":", "]:", 1)+" "+f[1]+" "+f[2])
		}
	}
	if len(wrong) == 0 {
		t.Fatalf("no ProFTPD key in %s", openssh.KnownHosts)
	}
	wrongHosts := filepath.Join(t.TempDir(), "known_hosts")
	must(t, os.WriteFile(wrongHosts, []byte(strings.Join(wrong, "\n")+"\n"), 0o644))
	const wrongPass = "not-the-password"
	badPass := openssh.Endpoint("sftp-wrong-password")
	badPass.Pass = wrongPass
	badKey := openssh.Endpoint("sftp-wrong-host-key")
	badKey.KnownHostsFile = wrongHosts
	down := config.SFTP("sftp-down", downAddr, "nobody", "nothing", openssh.KnownHosts)
	down.InsecureIgnoreHostKey, down.KnownHostsFile = true, ""
	s := NewStack(t, StackOptions{Endpoints: append(sftpEndpoints(openssh, proftpd), badPass, badKey, down),
		Config: func(c *config.Config) {
			c.Retry.MaxAttempts, c.Retry.BaseBackoff, c.Retry.MaxBackoff, c.Retry.MaxOutage = 3, 200*time.Millisecond, time.Second, 3*time.Second
			c.CircuitBreaker.FailureThreshold, c.CircuitBreaker.TimeoutSeconds = 3, 1
		}})
	dir := s.FTPDir()
	up := "/upload" + dir
	RemoveOnSuccess(t, openssh.Path(up))
	PutFile(t, openssh.Path(up+"/x.txt"), []byte("x\n"))
	cases := []struct {
		tk   Task
		code string
		says string
	}{
		{Task{TaskID: s.ID("missing"), SrcID: "openssh", SrcPath: up + "/no/such.txt", DstID: "local", DstPath: "m.txt"}, "FILE_NOT_FOUND", ""},
		{Task{TaskID: s.ID("outside-upload"), SrcID: "openssh", SrcPath: up + "/x.txt", DstID: "openssh", DstPath: "/not-writable/x.txt"}, "PERMISSION_DENIED", ""},
		{Task{TaskID: s.ID("auth"), SrcID: "sftp-wrong-password", SrcPath: up + "/x.txt", DstID: "local", DstPath: "a.txt"}, "AUTH_FAILED", ""},
		{Task{TaskID: s.ID("host-key"), SrcID: "sftp-wrong-host-key", SrcPath: up + "/x.txt", DstID: "local", DstPath: "h.txt"}, "INVALID_CONFIG", "SHA256:"},
		{Task{TaskID: s.ID("down"), SrcID: "sftp-down", SrcPath: "/x.txt", DstID: "local", DstPath: "down.txt"}, "CONNECTION_ERROR", "unreachable for"},
	}
	var tasks []Task
	for _, c := range cases {
		tasks = append(tasks, c.tk)
	}
	got := s.Run(t, 2*time.Minute, tasks...)
	for _, c := range cases {
		m := got[c.tk.TaskID]
		t.Logf("%-16s %s: %s", strings.TrimSuffix(c.tk.TaskID, "-"+s.Suffix), m.Str("error_code"), m.Str("error_message"))
		s.CheckFailure(t, m, c.tk, c.code)
		if !strings.Contains(m.Str("error_message"), c.says) {
			t.Errorf("%s: error_message %q does not say %q", c.tk.TaskID, m.Str("error_message"), c.says)
		}
		if strings.Contains(m.Str("error_message"), wrongPass) || strings.Contains(m.Str("error_message"), openssh.Pass) {
			t.Errorf("%s: error_message leaks a password", c.tk.TaskID)
		}
		if a, _ := m.Num("attempts"); c.code != "CONNECTION_ERROR" && a > 1 {
			t.Errorf("%s: %s retried (%v attempts)", c.tk.TaskID, c.code, a)
		}
	}
	if a, _ := got[s.ID("down")].Num("attempts"); a < 4 {
		t.Errorf("the down server's task used attempts instead of waiting out retry.max_outage: %v deliveries", a)
	}
}

// TestSFTPSessionsPerConnection runs more uploads at once than there are
// SSH connections, counting the connections each server holds with ss:
// OpenSSH's carry several sessions each and never exceed max_connections;
// ProFTPD's mod_sftp mixes up SFTP requests of concurrent sessions on one
// connection (proftpd/proftpd#1897: one reassembly buffer per connection),
// so the agent opens one session per connection there, still within
// max_connections, and every file arrives whole.
func TestSFTPSessionsPerConnection(t *testing.T) {
	openssh, proftpd := sftpServers(t)
	const opensshConns, proftpdConns, files = 2, 3, 12
	eps := sftpEndpoints(openssh, proftpd)
	for i := range eps {
		switch eps[i].ID {
		case "openssh":
			eps[i].MaxConnections = opensshConns
		case "proftpd":
			eps[i].MaxConnections = proftpdConns
		}
	}
	s := NewStack(t, StackOptions{Agents: 1, Slots: 2 * files, Endpoints: eps})
	dir := s.FTPDir()
	up := "/upload" + dir
	RemoveOnSuccess(t, openssh.Path(up), proftpd.Path(dir))

	const size = 4<<20 + 3
	sum := PutRandomFile(t, filepath.Join(s.Base, "out/f.bin"), size, 21)
	type check struct {
		tk   Task
		path string
	}
	var checks []check
	for i := range files {
		name := fmt.Sprintf("/f%02d.bin", i)
		checks = append(checks,
			check{Task{TaskID: s.ID("openssh" + name), SrcID: "local", SrcPath: "out/f.bin", DstID: "openssh", DstPath: up + name}, openssh.Path(up + name)},
			check{Task{TaskID: s.ID("proftpd" + name), SrcID: "local", SrcPath: "out/f.bin", DstID: "proftpd", DstPath: dir + name}, proftpd.Path(dir + name)})
	}
	var tasks []Task
	for _, c := range checks {
		tasks = append(tasks, c.tk)
	}
	ports := map[int]string{}
	for ep, addr := range map[string]string{"openssh": openssh.Addr, "proftpd": proftpd.Addr} {
		_, p, err := net.SplitHostPort(addr)
		must(t, err)
		n, err := strconv.Atoi(p)
		must(t, err)
		ports[n] = ep
	}
	limits := map[string]int{"openssh": opensshConns, "proftpd": proftpdConns}
	conns := sampleConnections(ports, limits, 20*time.Millisecond, func(int) string { return "agent" })
	got := s.Run(t, 3*time.Minute, tasks...)
	rep := conns.Stop()
	for _, c := range checks {
		s.CheckSuccess(t, got[c.tk.TaskID], c.tk, size)
		CheckFile(t, c.path, sum, size)
	}
	t.Logf("peak SSH connections over %d samples: openssh %d (limit %d), proftpd %d (limit %d)",
		rep.Samples, rep.Max["openssh"], opensshConns, rep.Max["proftpd"], proftpdConns)
	if rep.Samples == 0 {
		t.Fatalf("no connection samples: %s", rep.LastErr)
	}
	// What the agent learned reaches operators: ListEndpoints shows it.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		e := endpointInfo(t, s, "proftpd")
		if slices.ContainsFunc(e.Quirks, func(q string) bool { return strings.Contains(q, "one session per connection") }) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("ListEndpoints shows proftpd's quirks as %q, want the one-session one", e.Quirks)
			break
		}
	}
	if q := endpointInfo(t, s, "openssh").Quirks; len(q) > 0 {
		t.Errorf("ListEndpoints shows OpenSSH quirks %q, want none", q)
	}
	// And the dispatcher plans with it: a connection's quota is one session.
	if log, err := os.ReadFile(s.Dispatcher.Proc.LogPath); err != nil || !strings.Contains(string(log), "planning with its number") {
		t.Errorf("the dispatcher's log (%v) does not say it plans proftpd with one session per connection", err)
	}
	for ep, limit := range limits {
		if rep.Over[ep] > 0 {
			t.Errorf("%s: %d samples over max_connections %d (peak %d): %v", ep, rep.Over[ep], limit, rep.Max[ep], conns.Snapshots)
		}
		if rep.Max[ep] == 0 {
			t.Errorf("%s: no connection seen", ep)
		}
	}
}

// TestSFTPResumeAfterAgentKill SIGKILLs the only agent while it moves a
// 1 GiB file to OpenSSH and another from it, and starts it again: each
// redelivery continues from the partial file its first delivery left
// (resumed_from > 0 in the outcome) and the files arrive whole, with no
// temporary file left on either side.
func TestSFTPResumeAfterAgentKill(t *testing.T) {
	openssh, proftpd := sftpServers(t)
	s := NewStack(t, StackOptions{Agents: 1, Endpoints: sftpEndpoints(openssh, proftpd)})
	up := "/upload" + s.FTPDir()
	RemoveOnSuccess(t, openssh.Path(up))
	const size = 1 << 30
	upSum := PutRandomFile(t, filepath.Join(s.Base, "out/1GiB.bin"), size, 31)
	downSum := PutRandomFile(t, openssh.Path(up+"/src/1GiB.bin"), size, 32)
	tasks := []Task{
		{TaskID: s.ID("resume-up"), SrcID: "local", SrcPath: "out/1GiB.bin", DstID: "openssh", DstPath: up + "/1GiB.bin"},
		{TaskID: s.ID("resume-down"), SrcID: "openssh", SrcPath: up + "/src/1GiB.bin", DstID: "local", DstPath: "in/1GiB.bin"},
	}
	paths := map[string]string{tasks[0].TaskID: openssh.Path(up + "/1GiB.bin"), tasks[1].TaskID: filepath.Join(s.Base, "in/1GiB.bin")}
	sums := map[string]string{tasks[0].TaskID: upSum, tasks[1].TaskID: downSum}
	SubmitTasks(t, tasks...)

	// Kill once both are well into their files (or after 60 s, whatever
	// they reached).
	const enough = 64 << 20
	done := map[string]int64{}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := s.Dispatcher.API().ListLeases(ctx, &adminv1.ListLeasesRequest{})
		cancel()
		must(t, err)
		for _, l := range r.Leases {
			done[l.TaskId] = l.BytesDone
		}
		if done[tasks[0].TaskID] >= enough && done[tasks[1].TaskID] >= enough {
			break
		}
	}
	s.Agents[0].Kill()
	_ = s.Agents[0].Wait(0)
	t.Logf("killed the agent with upload at %s, download at %s of %s", proc.MiB(done[tasks[0].TaskID]), proc.MiB(done[tasks[1].TaskID]), proc.MiB(size))
	s.StartAgent(0)
	got := s.Await(t, []string{tasks[0].TaskID, tasks[1].TaskID}, 3*time.Minute)
	for _, tk := range tasks {
		m := got[tk.TaskID]
		from, _ := m.Num("resumed_from")
		// bytes_transferred counts what the delivery that committed moved.
		s.CheckSuccess(t, m, tk, size-int64(from))
		CheckFile(t, paths[tk.TaskID], sums[tk.TaskID], size)
		t.Logf("%s: resumed from %s (%s done when killed)", tk.TaskID, proc.MiB(int64(from)), proc.MiB(done[tk.TaskID]))
		// The progress seen lags what reached the partial file, so
		// resumed_from may be a little above it, never at the end.
		if done[tk.TaskID] >= enough && (from <= 0 || int64(from) >= size) {
			t.Errorf("%s: resumed_from %.0f, want a resume (%d bytes were done when the agent was killed)", tk.TaskID, from, done[tk.TaskID])
		}
	}
	if done[tasks[0].TaskID] < enough && done[tasks[1].TaskID] < enough {
		t.Errorf("neither transfer reached %s before the kill: nothing resumed to check", proc.MiB(enough))
	}
	for _, d := range []string{openssh.Path(up), filepath.Join(s.Base, "in")} {
		if tmp := TempFiles(d); len(tmp) > 0 {
			t.Errorf("temporary files left: %v", tmp)
		}
	}
}

// sftpSeedConnections is the original's connections.ini (seed_test.go)
// with its remote-ftp section made an SFTP server: the section keeps its
// name, so the seed task runs byte for byte, and gains what an sftp
// endpoint needs (a known_hosts file).
func sftpSeedConnections(srv stack.SFTPServer) string {
	host, port, _ := net.SplitHostPort(srv.Addr)
	return fmt.Sprintf(`[remote-ftp]
type = sftp
host = %s
port = %s
user = %s
pass = %s
known_hosts_file = %s

[local]
type = local
base_path = /data/storage
`, host, port, srv.User, srv.Pass, srv.KnownHosts)
}

// TestSFTPSeed runs the original's seed task (TestSeed) with its source
// on each SFTP server in place of vsftpd, under the original's
// config.yaml: /test1.txt from remote-ftp, now type = sftp, to
// /data/storage/test1.txt. ProFTPD's section does not say
// max_sessions_per_connection = 1: the agent finds that out itself.
func TestSFTPSeed(t *testing.T) {
	openssh, proftpd := sftpServers(t)
	for _, srv := range []stack.SFTPServer{openssh, proftpd} {
		t.Run(srv.Name, func(t *testing.T) {
			src := srv.Path("/test1.txt")
			sum := PutFile(t, src, []byte(seedContent))
			RemoveOnSuccess(t, src)
			must(t, os.MkdirAll(seedBase, 0o755))
			dst := seedBase + "/test1.txt"
			if err := os.Remove(dst); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			files := &stack.Files{Config: filepath.Join(t.TempDir(), "config.yaml"), Connections: filepath.Join(t.TempDir(), "connections.ini")}
			must(t, os.WriteFile(files.Config, []byte(originalConfig()), 0o644))
			must(t, os.WriteFile(files.Connections, []byte(sftpSeedConnections(srv)), 0o600))
			s := NewStack(t, StackOptions{Original: files, Group: "ftp-pooler-test", LocalBase: seedBase})

			ProduceLines(t, TasksTopic, []Record{{Key: "test-001", Value: []byte(seedTask)}})
			m := s.Outcome(t, "test-001", 60*time.Second)
			t.Logf("outcome: %s", m.Value)
			tk := Task{TaskID: "test-001", SrcID: "remote-ftp", SrcPath: "/test1.txt", DstID: "local", DstPath: "/data/storage/test1.txt"}
			s.CheckSuccess(t, m, tk, int64(len(seedContent)))
			for _, k := range []string{"task_id", "status", "src_id", "src_path", "dst_id", "dst_path", "bytes_transferred", "duration_ms", "timestamp"} {
				if _, ok := m.Fields[k]; !ok {
					t.Errorf("the original's field %s is missing", k)
				}
			}
			CheckFile(t, dst, sum, int64(len(seedContent)))
			CheckFile(t, src, sum, int64(len(seedContent)))
			if tmp := TempFiles(seedBase); len(tmp) > 0 {
				t.Errorf("temporary files left: %v", tmp)
			}
			// Exactly one outcome, also after the transaction settles. The
			// wait also puts this outcome before the next server's stack
			// (its Since is a second before it starts): the task id is the
			// same.
			time.Sleep(time.Second)
			if n := len(collector.Messages("test-001", "", s.Since)); n != 1 {
				t.Errorf("%d outcomes for test-001, want 1", n)
			}
		})
	}
}
