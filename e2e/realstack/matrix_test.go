//go:build e2e

package realstack

// TestMatrix runs one table of cases against every server of the
// compatibility matrix (scripts/e2e/matrix.sh: ProFTPD plain, explicit and
// implicit FTPS and active-only, pyftpdlib plain and FTPS, Apache
// FtpServer plain and FTPS, GNU inetutils ftpd), with vsftpd as the other
// side of relays, and prints a PASS/FAIL/SKIP table (also written to
// <state>/matrix.txt).
//
// Per server, one stack (two agents) runs every case but one, in three
// batches:
//
//  1. the seed download, FILE_NOT_FOUND and AUTH_FAILED (a second endpoint
//     with a wrong password), while few of the server's sessions are in use:
//     a login over the server's cap is refused as "full", whatever the
//     password;
//  2. everything else at once through the endpoint with max_connections =
//     the server's cap: an upload into new nested directories, relays to and
//     from vsftpd, 0 B, 1 MiB and 200 MiB both ways, names with spaces, é and
//     한글 and a 16-deep path both ways, and 60 small downloads, after which
//     ListEndpoints must show no learned limit;
//  3. the "server down" endpoint (a closed port), submitted first: with
//     retry.max_outage 3s it fails with CONNECTION_ERROR once the endpoint
//     has been unreachable that long.
//
// A second stack then sends 60 small downloads through the endpoint without
// max_connections (pool.max_sessions_per_connection, 10, is over the cap):
// all must succeed and ListEndpoints must show the limit learned from the
// server's refusals.
//
// Over TLS servers every case runs over FTPS (the 0 B upload is the
// regression test for empty FTPS uploads). The active-only server's
// sections say passive = false (active mode).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// matrixCases are the table's columns, in order.
var matrixCases = []string{
	"seed", "upload-dirs", "relay", "0B", "1MiB", "200MiB", "names", "deep16",
	"not-found", "auth-failed", "server-down", "cap-configured", "cap-learned",
}

// matrixSmall is how many small downloads the cap cases run at once, of
// matrixSmallSize bytes each; matrixBig the largest file size.
const (
	matrixSmall     = 60
	matrixSmallSize = 20
	matrixBig       = 200 << 20
	// The default per-endpoint limit (pool.max_sessions_per_connection).
	defaultEndpointLimit = 10
)

func TestMatrix(t *testing.T) {
	servers, err := loadMatrix(env)
	if err != nil {
		t.Fatal(err)
	}
	if servers == nil {
		t.Skipf("no FTP_MATRIX in %s: start the matrix servers with scripts/e2e/matrix.sh start (make e2e does)", filepath.Join(env.StateDir, "env"))
	}
	start := time.Now()
	tab := newMatrixTable(servers)
	defer func() { tab.report(t, time.Since(start)) }()
	big := makeBigSource(t)
	for _, m := range servers {
		t.Run(m.Name, func(t *testing.T) {
			defer func() {
				if t.Failed() {
					tab.unfinished(m.Name, "the server's test stopped early; see its log")
				}
			}()
			testMatrixServer(t, m, tab, big)
		})
	}
}

func testMatrixServer(t *testing.T, m MatrixServer, tab *matrixTable, big bigSource) {
	t.Logf("%s: %s on %s, %s, cap %d (refused at %s: %q), passive ports %s, home %s",
		m.Name, m.Version, m.Addr, m.Label(), m.Cap, m.CapStage, m.CapReply, m.Passive, m.Home)
	c, err := net.DialTimeout("tcp", m.Addr, 3*time.Second)
	if err != nil {
		t.Fatalf("%s does not answer on %s (%v): start it with scripts/e2e/matrix.sh start", m.Name, m.Addr, err)
	}
	c.Close()
	t.Run("cases", func(t *testing.T) { matrixMainStack(t, m, tab, big) })
	t.Run("cap-learned", func(t *testing.T) {
		tab.run(t, m.Name, "cap-learned", func(t *caseT) { matrixCapLearned(t, m) })
	})
}

// matrixConfig is the stacks' config: a short max_outage for the server
// down, and a breaker that probes every second.
func matrixConfig(c *config.Config) {
	c.Retry.MaxAttempts, c.Retry.BaseBackoff, c.Retry.MaxBackoff, c.Retry.MaxOutage = 3, 200*time.Millisecond, time.Second, 3*time.Second
	c.CircuitBreaker.FailureThreshold, c.CircuitBreaker.TimeoutSeconds = 3, 1
}

// mcase is one column's tasks and checks.
type mcase struct {
	id    string
	tasks []Task
	check func(t testing.TB, got map[string]Message)
}

// matrixMainStack runs every case but cap-learned on one stack.
func matrixMainStack(t *testing.T, m MatrixServer, tab *matrixTable, big bigSource) {
	_, port, _ := net.SplitHostPort(freeAddr(t)) // nothing listens there now
	downPort, _ := strconv.Atoi(port)
	bad := m.FTPServer
	bad.Pass = "wrong;" + m.Pass + "%x"
	capped, badpass := m.Section(m.Name, m.Host, m.Port, m.FTPServer), m.Section(m.Name+"-badpass", m.Host, m.Port, bad)
	capped.MaxConnections, badpass.MaxConnections = m.Cap, 1
	extra := []config.Endpoint{capped, badpass, m.Section(m.Name+"-down", "127.0.0.1", downPort, m.FTPServer)}
	s := NewStack(t, StackOptions{Agents: 2, Endpoints: extra, Config: matrixConfig})

	dir := s.FTPDir()
	// dir is /rs-<stack>/<test>: the stack's own top directory goes too.
	RemoveOnSuccess(t, m.Path(path.Dir(dir)), env.VSFTPD.Path(path.Dir(dir)))
	local := func(p string) string { return filepath.Join(s.Base, filepath.FromSlash(p)) }

	// Batch 3 first: the endpoint that is down waits max_outage.
	down := matrixDownCase(s, m, time.Now())
	SubmitTasks(t, down.tasks...)

	// Batch 1: few sessions in use.
	batch1 := []*mcase{matrixSeedCase(t, s, m), matrixNotFoundCase(s, m, dir, local), matrixAuthCase(s, m, bad)}
	matrixBatch(t, s, m, tab, batch1, time.Minute, true)

	// Batch 2: the rest at once, through max_connections = cap.
	batch2 := []*mcase{
		matrixUploadDirsCase(t, s, m, dir, local),
		matrixRelayCase(t, s, m, dir),
	}
	for _, size := range []int64{0, 1 << 20, matrixBig} {
		batch2 = append(batch2, matrixSizeCase(t, s, m, dir, local, size, big))
	}
	batch2 = append(batch2, matrixNamesCase(t, s, m, dir, local), matrixDeepCase(t, s, m, dir, local))
	small := matrixSmallCase(t, s, m, m.Name, dir+"/cap", "cap-configured", local)
	batch2 = append(batch2, small)
	busy := watchEndpoint(s, m.Name)
	var maxBusy uint32
	stopWatch := sync.OnceFunc(func() { maxBusy = busy() })
	defer stopWatch()
	origCheck := small.check
	small.check = func(t testing.TB, got map[string]Message) {
		origCheck(t, got)
		stopWatch()
		e := endpointInfo(t, s, m.Name)
		t.Logf("%s with max_connections = %d: limit %d, configured %d, reason %q; at most %d busy at once",
			m.Name, m.Cap, e.Limit, e.ConfiguredLimit, e.LimitReason, maxBusy)
		if e.ConfiguredLimit != uint32(m.Cap) || e.Limit != uint32(m.Cap) || e.LimitReason != "" {
			t.Errorf("%s: with max_connections = cap %d no limit should be learned: limit %d, configured_limit %d, limit_reason %q (last error %q)",
				m.Name, m.Cap, e.Limit, e.ConfiguredLimit, e.LimitReason, e.LastError)
		}
		if maxBusy > uint32(m.Cap) {
			t.Errorf("%s: %d connections busy at once, over max_connections %d", m.Name, maxBusy, m.Cap)
		}
	}
	matrixBatch(t, s, m, tab, batch2, 4*time.Minute, true)
	stopWatch()

	// Batch 3's outcome.
	matrixBatch(t, s, m, tab, []*mcase{down}, 30*time.Second, false)
}

// matrixBatch submits the cases' tasks (unless submit is false: they
// were), waits for their outcomes and runs each case's checks as a subtest.
func matrixBatch(t *testing.T, s *Stack, m MatrixServer, tab *matrixTable, cases []*mcase, timeout time.Duration, submit bool) {
	t.Helper()
	var tasks []Task
	var ids []string
	for _, c := range cases {
		tasks = append(tasks, c.tasks...)
		for _, tk := range c.tasks {
			ids = append(ids, tk.TaskID)
		}
	}
	start := time.Now()
	if submit {
		SubmitTasks(t, tasks...)
	}
	got, missing := collector.Await(ids, "", s.Since, timeout)
	var names []string
	for _, c := range cases {
		names = append(names, c.id)
	}
	t.Logf("%s: %d tasks (%s): outcomes in %s, %d missing", m.Name, len(ids), strings.Join(names, ", "), time.Since(start).Round(time.Millisecond), len(missing))
	lost := map[string]bool{}
	for _, id := range missing {
		lost[id] = true
	}
	for _, c := range cases {
		c := c
		tab.run(t, m.Name, c.id, func(t *caseT) {
			for _, tk := range c.tasks {
				if lost[tk.TaskID] {
					t.Errorf("%s: no outcome within %s:%s", tk.TaskID, timeout, s.taskStates([]string{tk.TaskID}))
				} else if got[tk.TaskID].Topic == DLQTopic {
					t.Errorf("%s went to the DLQ: %s", tk.TaskID, got[tk.TaskID].Value)
				}
			}
			if !t.Failed() {
				c.check(t, got)
			}
		})
	}
}

// --- the cases ---------------------------------------------------------------

// matrixSeedCase is the original's seed task against this server: /test1.txt
// to an absolute path under the local base.
func matrixSeedCase(t testing.TB, s *Stack, m MatrixServer) *mcase {
	src := m.Path("/test1.txt")
	PutFile(t, src, []byte(seedContent))
	tk := Task{TaskID: s.ID("seed"), SrcID: m.Name, SrcPath: "/test1.txt", DstID: "local", DstPath: s.Base + "/test1.txt"}
	return &mcase{id: "seed", tasks: []Task{tk}, check: func(t testing.TB, got map[string]Message) {
		msg := got[tk.TaskID]
		s.CheckSuccess(t, msg, tk, int64(len(seedContent)))
		for _, k := range []string{"task_id", "status", "src_id", "src_path", "dst_id", "dst_path", "bytes_transferred", "duration_ms", "timestamp"} {
			if _, ok := msg.Fields[k]; !ok {
				t.Errorf("the original's field %s is missing: %s", k, msg.Value)
			}
		}
		CheckFile(t, tk.DstPath, Sum([]byte(seedContent)), int64(len(seedContent)))
		CheckFile(t, src, Sum([]byte(seedContent)), int64(len(seedContent)))
		if n := len(collector.Messages(tk.TaskID, "", s.Since)); n != 1 {
			t.Errorf("%d outcomes for %s, want 1", n, tk.TaskID)
		}
	}}
}

func matrixNotFoundCase(s *Stack, m MatrixServer, dir string, local func(string) string) *mcase {
	tk := Task{TaskID: s.ID("not-found"), SrcID: m.Name, SrcPath: dir + "/no/such/file.txt", DstID: "local", DstPath: "not-found/missing.txt"}
	return &mcase{id: "not-found", tasks: []Task{tk}, check: func(t testing.TB, got map[string]Message) {
		msg := got[tk.TaskID]
		s.CheckFailure(t, msg, tk, "FILE_NOT_FOUND")
		if a, _ := msg.Num("attempts"); a > 1 {
			t.Errorf("%s: FILE_NOT_FOUND retried (%v attempts)", tk.TaskID, a)
		}
		if _, err := os.Stat(local(tk.DstPath)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a failed download left %s (%v)", tk.DstPath, err)
		}
	}}
}

func matrixAuthCase(s *Stack, m MatrixServer, bad FTPServer) *mcase {
	tk := Task{TaskID: s.ID("auth-failed"), SrcID: m.Name + "-badpass", SrcPath: "/test1.txt", DstID: "local", DstPath: "auth/test1.txt"}
	return &mcase{id: "auth-failed", tasks: []Task{tk}, check: func(t testing.TB, got map[string]Message) {
		msg := got[tk.TaskID]
		s.CheckFailure(t, msg, tk, "AUTH_FAILED")
		if a, _ := msg.Num("attempts"); a > 1 {
			t.Errorf("%s: AUTH_FAILED retried (%v attempts)", tk.TaskID, a)
		}
		if e := msg.Str("error_message"); strings.Contains(e, bad.Pass) || strings.Contains(e, m.Pass) {
			t.Errorf("%s: error_message leaks a password: %s", tk.TaskID, e)
		}
	}}
}

// matrixDownCase's task goes to a closed port; submitted is when.
func matrixDownCase(s *Stack, m MatrixServer, submitted time.Time) *mcase {
	tk := Task{TaskID: s.ID("server-down"), SrcID: m.Name + "-down", SrcPath: "/test1.txt", DstID: "local", DstPath: "down/test1.txt"}
	return &mcase{id: "server-down", tasks: []Task{tk}, check: func(t testing.TB, got map[string]Message) {
		msg := got[tk.TaskID]
		s.CheckFailure(t, msg, tk, "CONNECTION_ERROR")
		if e := msg.Str("error_message"); !strings.Contains(e, "unreachable for") || !strings.Contains(e, "retry.max_outage 3s") {
			t.Errorf("%s: want \"unreachable for ... (retry.max_outage 3s)\": %s", tk.TaskID, msg.Value)
		}
		if waited := msg.Time.Sub(submitted); waited < 3*time.Second {
			t.Errorf("%s: failed %s after it was submitted, before retry.max_outage 3s", tk.TaskID, waited)
		} else {
			t.Logf("%s: %s after %s: %s", tk.TaskID, msg.Str("error_code"), waited.Round(time.Millisecond), msg.Str("error_message"))
		}
	}}
}

// matrixUploadDirsCase uploads two files into directories that do not
// exist yet, one by a path relative to the local base, one absolute.
func matrixUploadDirsCase(t testing.TB, s *Stack, m MatrixServer, dir string, local func(string) string) *mcase {
	csv := []byte("id,amount\n1,42\n2,17\n")
	csvSum := PutFile(t, local("outbox/report.csv"), csv)
	const binSize = 300 << 10
	binSum := PutRandomFile(t, local("outbox/blob.bin"), binSize, 1)
	tasks := []Task{
		{TaskID: s.ID("upload-csv"), SrcID: "local", SrcPath: "outbox/report.csv", DstID: m.Name, DstPath: dir + "/upload/incoming/2025-11-25/report.csv"},
		{TaskID: s.ID("upload-bin"), SrcID: "local", SrcPath: local("outbox/blob.bin"), DstID: m.Name, DstPath: dir + "/upload/a/b/c/d/blob.bin"},
	}
	for _, tk := range tasks {
		if _, err := os.Stat(path.Dir(m.Path(tk.DstPath))); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s exists before the test (%v)", path.Dir(tk.DstPath), err)
		}
	}
	return &mcase{id: "upload-dirs", tasks: tasks, check: func(t testing.TB, got map[string]Message) {
		s.CheckSuccess(t, got[tasks[0].TaskID], tasks[0], int64(len(csv)))
		s.CheckSuccess(t, got[tasks[1].TaskID], tasks[1], binSize)
		CheckFile(t, m.Path(tasks[0].DstPath), csvSum, int64(len(csv)))
		CheckFile(t, m.Path(tasks[1].DstPath), binSum, binSize)
		CheckFile(t, local("outbox/report.csv"), csvSum, int64(len(csv)))
		CheckFile(t, local("outbox/blob.bin"), binSum, binSize)
		checkNoTemp(t, m.Path(dir+"/upload"))
	}}
}

// matrixRelayCase relays vsftpd → the server and the server → vsftpd.
func matrixRelayCase(t testing.TB, s *Stack, m MatrixServer, dir string) *mcase {
	const size = 3<<20 + 123
	aSum := PutRandomFile(t, env.VSFTPD.Path(dir+"/relay/out/a.bin"), size, 2)
	bSum := PutRandomFile(t, m.Path(dir+"/relay/out/b.bin"), size, 3)
	tasks := []Task{
		{TaskID: s.ID("relay-from-vsftpd"), SrcID: "vsftpd", SrcPath: dir + "/relay/out/a.bin", DstID: m.Name, DstPath: dir + "/relay/in/from-vsftpd/a.bin"},
		{TaskID: s.ID("relay-to-vsftpd"), SrcID: m.Name, SrcPath: dir + "/relay/out/b.bin", DstID: "vsftpd", DstPath: dir + "/relay/in/from-" + m.Name + "/b.bin"},
	}
	return &mcase{id: "relay", tasks: tasks, check: func(t testing.TB, got map[string]Message) {
		for _, tk := range tasks {
			s.CheckSuccess(t, got[tk.TaskID], tk, size)
		}
		CheckFile(t, m.Path(tasks[0].DstPath), aSum, size)
		CheckFile(t, env.VSFTPD.Path(tasks[1].DstPath), bSum, size)
		CheckFile(t, env.VSFTPD.Path(tasks[0].SrcPath), aSum, size)
		CheckFile(t, m.Path(tasks[1].SrcPath), bSum, size)
		checkNoTemp(t, m.Path(dir+"/relay"))
		checkNoTemp(t, env.VSFTPD.Path(dir+"/relay"))
	}}
}

// matrixSizeCase downloads and uploads a file of size bytes. The 200 MiB
// file is the run's one source, hard-linked in.
func matrixSizeCase(t testing.TB, s *Stack, m MatrixServer, dir string, local func(string) string, size int64, big bigSource) *mcase {
	name := sizeName(size)
	srvSrc := dir + "/sizes/src/" + name + ".bin"
	locSrc := "sizes/src/" + name + ".bin"
	var downSum, upSum string
	if size == big.size {
		downSum = big.place(t, m.Path(srvSrc))
		upSum = big.place(t, local(locSrc))
		down, up := local("sizes/down/"+name+".bin"), m.Path(dir+"/sizes/up/"+name+".bin")
		// Big files go whatever the outcome.
		t.Cleanup(func() {
			for _, p := range []string{m.Path(srvSrc), local(locSrc), down, up} {
				_ = os.Remove(p)
			}
		})
	} else {
		downSum = PutRandomFile(t, m.Path(srvSrc), size, uint64(100+size%1000))
		upSum = PutRandomFile(t, local(locSrc), size, uint64(200+size%1000))
	}
	tasks := []Task{
		{TaskID: s.ID("size-" + name + "-download"), SrcID: m.Name, SrcPath: srvSrc, DstID: "local", DstPath: "sizes/down/" + name + ".bin"},
		{TaskID: s.ID("size-" + name + "-upload"), SrcID: "local", SrcPath: locSrc, DstID: m.Name, DstPath: dir + "/sizes/up/" + name + ".bin"},
	}
	return &mcase{id: name, tasks: tasks, check: func(t testing.TB, got map[string]Message) {
		for _, tk := range tasks {
			msg := got[tk.TaskID]
			s.CheckSuccess(t, msg, tk, size)
			if d, ok := msg.Num("duration_ms"); ok && size >= 1<<20 {
				t.Logf("%s %s: %d ms on %s (%.0f MiB/s)", m.Name, strings.TrimSuffix(tk.TaskID, "-"+s.Suffix), int64(d), msg.Str("agent"), float64(size)/(1<<20)/(d/1000+1e-3))
			}
		}
		CheckFile(t, local(tasks[0].DstPath), downSum, size)
		CheckFile(t, m.Path(srvSrc), downSum, size)
		CheckFile(t, m.Path(tasks[1].DstPath), upSum, size)
		CheckFile(t, local(locSrc), upSum, size)
		checkNoTemp(t, m.Path(dir+"/sizes"))
		checkNoTemp(t, local("sizes"))
	}}
}

// The names case's directory and file: spaces, é and 한글.
const (
	matrixNameDir  = "dir with spaces/é accent/한글 폴더"
	matrixNameFile = "file é 한글 name.txt"
)

func matrixNamesCase(t testing.TB, s *Stack, m MatrixServer, dir string, local func(string) string) *mcase {
	return matrixBothWays(t, s, m, "names", dir+"/names", local, matrixNameDir, matrixNameFile,
		[]byte("파일 content with é and spaces\n"))
}

func matrixDeepCase(t testing.TB, s *Stack, m MatrixServer, dir string, local func(string) string) *mcase {
	var levels []string
	for i := 1; i <= 16; i++ {
		levels = append(levels, fmt.Sprintf("level-%02d", i))
	}
	return matrixBothWays(t, s, m, "deep16", dir+"/deep", local, strings.Join(levels, "/"), "deep file.txt",
		[]byte("sixteen levels down\n"))
}

// matrixBothWays downloads root/down-src/sub/name and uploads a local
// file to root/up/sub/name, sub and name kept as given.
func matrixBothWays(t testing.TB, s *Stack, m MatrixServer, id, root string, local func(string) string, sub, name string, content []byte) *mcase {
	sum := Sum(content)
	PutFile(t, m.Path(root+"/src/"+sub+"/"+name), content)
	PutFile(t, local(id+"/src/"+sub+"/"+name), content)
	tasks := []Task{
		{TaskID: s.ID(id + "-download"), SrcID: m.Name, SrcPath: root + "/src/" + sub + "/" + name, DstID: "local", DstPath: id + "/down/" + sub + "/" + name},
		{TaskID: s.ID(id + "-upload"), SrcID: "local", SrcPath: id + "/src/" + sub + "/" + name, DstID: m.Name, DstPath: root + "/up/" + sub + "/" + name},
	}
	return &mcase{id: id, tasks: tasks, check: func(t testing.TB, got map[string]Message) {
		for _, tk := range tasks {
			s.CheckSuccess(t, got[tk.TaskID], tk, int64(len(content)))
		}
		CheckFile(t, local(tasks[0].DstPath), sum, int64(len(content)))
		CheckFile(t, m.Path(tasks[0].SrcPath), sum, int64(len(content)))
		CheckFile(t, m.Path(tasks[1].DstPath), sum, int64(len(content)))
		CheckFile(t, local(tasks[1].SrcPath), sum, int64(len(content)))
		checkNoTemp(t, m.Path(root))
	}}
}

// matrixSmallCase is matrixSmall downloads of matrixSmallSize bytes each
// through endpoint id, all at once; none may fail (a login refused for
// the server being full is not AUTH_FAILED).
func matrixSmallCase(t testing.TB, s *Stack, m MatrixServer, id, root, caseID string, local func(string) string) *mcase {
	var tasks []Task
	sums := map[string]string{}
	for i := 0; i < matrixSmall; i++ {
		content := []byte(fmt.Sprintf("cap file number %03d\n", i))
		if len(content) != matrixSmallSize {
			t.Fatalf("small file of %d bytes", len(content))
		}
		src := fmt.Sprintf("%s/src/%02d.txt", root, i)
		tk := Task{TaskID: s.ID(fmt.Sprintf("%s-%02d", caseID, i)), SrcID: id, SrcPath: src, DstID: "local", DstPath: fmt.Sprintf("%s/%02d.txt", caseID, i)}
		sums[tk.TaskID] = PutFile(t, m.Path(src), content)
		tasks = append(tasks, tk)
	}
	return &mcase{id: caseID, tasks: tasks, check: func(t testing.TB, got map[string]Message) {
		codes := map[string]int{}
		for _, tk := range tasks {
			msg := got[tk.TaskID]
			if msg.Str("status") != "success" {
				codes[msg.Str("error_code")]++
				if codes[msg.Str("error_code")] == 1 {
					t.Errorf("%s: %s: %s (attempts %v, %s)", tk.TaskID, msg.Str("error_code"), msg.Str("error_message"), msg.Fields["attempts"], msg.Str("agent"))
				}
				continue
			}
			s.CheckSuccess(t, msg, tk, matrixSmallSize)
			CheckFile(t, local(tk.DstPath), sums[tk.TaskID], matrixSmallSize)
			CheckFile(t, m.Path(tk.SrcPath), sums[tk.TaskID], matrixSmallSize)
		}
		if len(codes) > 0 {
			t.Errorf("%s: of %d downloads through %s, these failed: %v", m.Name, len(tasks), id, codes)
		}
	}}
}

// matrixCapLearned: a stack whose endpoint has no max_connections, so its
// limit (10) is over the server's cap. The 60 downloads must all succeed
// and the limit be learned from the refusals.
func matrixCapLearned(t *caseT, m MatrixServer) {
	s := NewStack(t.T, StackOptions{Agents: 2, Endpoints: []config.Endpoint{m.Section(m.Name, m.Host, m.Port, m.FTPServer)}, Config: matrixConfig})
	dir := s.FTPDir()
	RemoveOnSuccess(t, m.Path(path.Dir(dir)))
	local := func(p string) string { return filepath.Join(s.Base, filepath.FromSlash(p)) }
	c := matrixSmallCase(t, s, m, m.Name, dir+"/cap", "cap-learned", local)
	busy := watchEndpoint(s, m.Name)
	start := time.Now()
	SubmitTasks(t, c.tasks...)
	var ids []string
	for _, tk := range c.tasks {
		ids = append(ids, tk.TaskID)
	}
	got, missing := collector.Await(ids, "", s.Since, 2*time.Minute)
	maxBusy := busy()
	t.Logf("%s: %d downloads without max_connections: outcomes in %s, %d missing; at most %d busy at once",
		m.Name, len(ids), time.Since(start).Round(time.Millisecond), len(missing), maxBusy)
	if len(missing) > 0 {
		t.Errorf("%d of %d outcomes missing after 2m (first: %v)%s", len(missing), len(ids), first(missing, 5), s.taskStates(first(missing, 3)))
	}
	c.check(t, got)
	e := endpointInfo(t, s, m.Name)
	refusals := matrixRefusals(s, m)
	t.Logf("%s without max_connections: limit %d, configured %d, reason %q, changed at %v; the agents logged %d refusals %q",
		m.Name, e.Limit, e.ConfiguredLimit, e.LimitReason, e.LimitChangedAt.AsTime().Format(time.RFC3339Nano), refusals, m.CapReply)
	if e.ConfiguredLimit != defaultEndpointLimit {
		t.Errorf("%s: configured_limit %d, want pool.max_sessions_per_connection's %d", m.Name, e.ConfiguredLimit, defaultEndpointLimit)
	}
	if e.LimitReason == "" && refusals == 0 && !t.Failed() {
		// Nothing to learn from: the server let every session in.
		t.Skipf("%s refused no session though up to %d were busy at once (cap %d): no limit to learn", m.Name, maxBusy, m.Cap)
	}
	if e.LimitReason != "" {
		t.Info(fmt.Sprintf("learned limit %d (cap %d, max_connections %d) after %d refusals", e.Limit, m.Cap, e.ConfiguredLimit, refusals))
	}
	// The limit is what the fleet held at the refusal: the refusing agent's
	// own count is exact, the other agent's is its leases in flight or its
	// last report, whichever is larger (reports lag), so it may stand a
	// little above the cap until a later refusal lowers it; below
	// max_connections it must be.
	if e.Limit >= e.ConfiguredLimit || e.Limit < 1 || e.LimitReason == "" {
		t.Errorf("%s refuses sessions over %d (%s: %q), but ListEndpoints shows limit %d of %d, limit_reason %q (at most %d busy at once)",
			m.Name, m.Cap, m.CapStage, m.CapReply, e.Limit, e.ConfiguredLimit, e.LimitReason, maxBusy)
	}
}

// matrixRefusals counts the agents' log lines that carry the server's
// refusal of a session over its cap (FTP_K_CAP_REPLY without its code).
func matrixRefusals(s *Stack, m MatrixServer) int {
	text := strings.TrimSpace(m.CapReply)
	if f := strings.SplitN(text, " ", 2); len(f) == 2 && len(f[0]) == 3 {
		text = f[1]
	}
	if text == "" {
		return 0
	}
	re := regexp.MustCompile(regexp.QuoteMeta(text))
	n := 0
	for _, a := range s.Agents {
		n += a.CountLog(re)
	}
	return n
}

// endpointInfo is ListEndpoints' entry for id.
func endpointInfo(t testing.TB, s *Stack, id string) *adminv1.EndpointInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := s.Dispatcher.API().ListEndpoints(ctx, &adminv1.ListEndpointsRequest{})
	if err != nil {
		t.Fatalf("ListEndpoints: %v", err)
	}
	for _, e := range r.Endpoints {
		if e.EndpointId == id {
			return e
		}
	}
	t.Fatalf("ListEndpoints has no %s", id)
	return nil
}

func checkNoTemp(t testing.TB, dir string) {
	t.Helper()
	if tmp := TempFiles(dir); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

// --- the 200 MiB source ---------------------------------------------------------

// bigSource is one 200 MiB file made once per run and hard-linked where a
// case needs it (read-only for everyone but root: no server writes it).
type bigSource struct {
	path string
	size int64
	sum  string
	seed uint64
}

func makeBigSource(t *testing.T) bigSource {
	b := bigSource{path: filepath.Join(env.WorkDir, "TestMatrix-"+runID+"-"+sizeName(matrixBig)+".bin"), size: matrixBig, seed: 7000}
	start := time.Now()
	b.sum = PutRandomFile(t, b.path, b.size, b.seed)
	t.Logf("made the %s source in %s", sizeName(b.size), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { _ = os.Remove(b.path) })
	return b
}

// place puts the file at p (a hard link, else a copy made again) and
// returns its sha256.
func (b bigSource) place(t testing.TB, p string) string {
	t.Helper()
	mkdirAllOwned(t, filepath.Dir(p))
	_ = os.Remove(p)
	if err := os.Link(b.path, p); err == nil {
		return b.sum
	}
	return PutRandomFile(t, p, b.size, b.seed)
}

// --- the table -------------------------------------------------------------------

// caseT records the first problem of a case for the table's notes.
type caseT struct {
	*testing.T
	mu        sync.Mutex
	firstNote string
	info      string
}

// Info is a remark for the table's notes, whatever the outcome.
func (c *caseT) Info(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.info = s
}

// outcomeRE finds a failure outcome's code and message in a problem's text.
var outcomeRE = regexp.MustCompile(`"task_id":"([^"]*)".*"error_code":"([^"]*)","error_message":"((?:[^"\\]|\\.)*)"`)

func (c *caseT) note(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.firstNote != "" {
		return
	}
	if m := outcomeRE.FindStringSubmatch(s); m != nil {
		// The outcome's JSON is long; its code and message say it.
		s = fmt.Sprintf("%s failed with %s: %s", m[1], m[2], strings.ReplaceAll(m[3], `\"`, `"`))
	}
	c.firstNote = s
}

func (c *caseT) Errorf(format string, args ...any) {
	c.T.Helper()
	c.note(fmt.Sprintf(format, args...))
	c.T.Errorf(format, args...)
}

func (c *caseT) Error(args ...any) {
	c.T.Helper()
	c.note(fmt.Sprint(args...))
	c.T.Error(args...)
}

func (c *caseT) Fatalf(format string, args ...any) {
	c.T.Helper()
	c.note(fmt.Sprintf(format, args...))
	c.T.Fatalf(format, args...)
}

func (c *caseT) Fatal(args ...any) {
	c.T.Helper()
	c.note(fmt.Sprint(args...))
	c.T.Fatal(args...)
}

func (c *caseT) Skipf(format string, args ...any) {
	c.T.Helper()
	c.note(fmt.Sprintf(format, args...))
	c.T.Skipf(format, args...)
}

func (c *caseT) Skip(args ...any) {
	c.T.Helper()
	c.note(fmt.Sprint(args...))
	c.T.Skip(args...)
}

type matrixTable struct {
	mu      sync.Mutex
	servers []MatrixServer
	res     map[string]map[string]string // server → case → PASS/FAIL/SKIP
	notes   map[string]map[string]string // server → case → first problem
	server  map[string]string            // server → a note for the whole row
}

func newMatrixTable(servers []MatrixServer) *matrixTable {
	tab := &matrixTable{servers: servers, res: map[string]map[string]string{}, notes: map[string]map[string]string{}, server: map[string]string{}}
	for _, m := range servers {
		tab.res[m.Name] = map[string]string{}
		tab.notes[m.Name] = map[string]string{}
	}
	return tab
}

func (tab *matrixTable) set(server, c, status, note string) {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	tab.res[server][c] = status
	if note != "" {
		tab.notes[server][c] = note
	}
}

// unfinished marks the cases of server that never ran.
func (tab *matrixTable) unfinished(server, why string) {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	left := false
	for _, c := range matrixCases {
		if tab.res[server][c] == "" {
			tab.res[server][c] = "FAIL"
			left = true
		}
	}
	if left && tab.server[server] == "" {
		tab.server[server] = why
	}
}

// run runs f as the subtest c of server and records how it ended.
func (tab *matrixTable) run(t *testing.T, server, c string, f func(t *caseT)) {
	t.Run(c, func(t *testing.T) {
		ct := &caseT{T: t}
		defer func() {
			status := "PASS"
			if t.Failed() {
				status = "FAIL"
			} else if t.Skipped() {
				status = "SKIP"
			}
			ct.mu.Lock()
			note := ct.firstNote
			if ct.info != "" {
				if note != "" {
					note = ct.info + "; " + note
				} else {
					note = ct.info
				}
			}
			ct.mu.Unlock()
			tab.set(server, c, status, note)
		}()
		f(ct)
	})
}

// report logs the table, as Markdown, and writes it to <state>/matrix.txt.
func (tab *matrixTable) report(t *testing.T, took time.Duration) {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "FTP server compatibility matrix, %s, TestMatrix took %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), took.Round(time.Second))
	b.WriteString("| server | version | protocol |")
	for _, c := range matrixCases {
		b.WriteString(" " + c + " |")
	}
	b.WriteString("\n|---|---|---|" + strings.Repeat("---|", len(matrixCases)) + "\n")
	counts := map[string]int{}
	var shown []MatrixServer
	for _, m := range tab.servers {
		if len(tab.res[m.Name]) == 0 {
			continue // not selected by -run
		}
		shown = append(shown, m)
		fmt.Fprintf(&b, "| %s | %s | %s |", m.Name, m.Version, m.Label())
		for _, c := range matrixCases {
			r := tab.res[m.Name][c]
			if r == "" {
				r = "-"
			}
			counts[r]++
			b.WriteString(" " + r + " |")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n%d PASS, %d FAIL, %d SKIP", counts["PASS"], counts["FAIL"], counts["SKIP"])
	if counts["-"] > 0 {
		fmt.Fprintf(&b, ", %d not run", counts["-"])
	}
	b.WriteString("\n")
	var notes []string
	for _, m := range shown {
		if w := tab.server[m.Name]; w != "" {
			notes = append(notes, fmt.Sprintf("- %s: %s", m.Name, w))
		}
		var cs []string
		for c := range tab.notes[m.Name] {
			cs = append(cs, c)
		}
		sort.Slice(cs, func(i, j int) bool { return caseIndex(cs[i]) < caseIndex(cs[j]) })
		for _, c := range cs {
			notes = append(notes, fmt.Sprintf("- %s / %s (%s): %s", m.Name, c, tab.res[m.Name][c], oneLine(tab.notes[m.Name][c], 400)))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	t.Log("\n" + b.String())
	out := filepath.Join(env.StateDir, "matrix.txt")
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Errorf("writing %s: %v", out, err)
	} else {
		t.Logf("matrix written to %s", out)
	}
}

func caseIndex(c string) int {
	for i, x := range matrixCases {
		if x == c {
			return i
		}
	}
	return len(matrixCases)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
