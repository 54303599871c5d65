package integration

import (
	"context"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/kafka"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// TestNonTasksGoToTheDLQ produces records that are not tasks, then a valid
// task: each record gets one DLQ message with its bytes intact, and
// consumption carries on.
func TestNonTasksGoToTheDLQ(t *testing.T) {
	s := newStack(t, stackOptions{})
	writeFile(t, filepath.Join(s.ftpA.Root, "after.txt"), "still working")
	junk := make([]byte, 1<<20)
	for i := range junk {
		junk[i] = byte(i*7 + i/251)
	}
	cases := []struct {
		key      string
		value    []byte
		wantType string
		wantCode string
	}{
		{"empty", nil, "PARSE_ERROR", "EMPTY_MESSAGE"},
		{"not-json", []byte("not json"), "PARSE_ERROR", "INVALID_JSON"},
		{"bad-utf8", []byte("{\"src_id\":\"\xff\xfe\"}"), "PARSE_ERROR", "INVALID_UTF8"},
		{"array", []byte("[]"), "PARSE_ERROR", "NOT_AN_OBJECT"},
		{"number", []byte("42"), "PARSE_ERROR", "NOT_AN_OBJECT"},
		{"empty-object", []byte("{}"), "INVALID_TASK", "MISSING_FIELD"},
		{"wrong-type", []byte(`{"task_id":"w","src_id":1,"src_path":"/a","dst_id":"local","dst_path":"a"}`), "INVALID_TASK", "WRONG_TYPE"},
		{"junk-1mib", junk, "PARSE_ERROR", "INVALID_UTF8"},
	}
	for _, c := range cases {
		s.produce(c.key, c.value, map[string]string{"origin": c.key})
	}
	s.submit(map[string]any{"task_id": "after-junk", "src_id": "remote-ftp", "src_path": "/after.txt", "dst_id": "local", "dst_path": "after.txt"})

	dlq := s.await(len(cases), 30*time.Second, func(m kafka.Message) bool { return m.Topic == "ftp-tasks-dlq" })
	byKey := map[string]kafka.Message{}
	for _, m := range dlq {
		if _, dup := byKey[m.Key]; dup {
			t.Errorf("two DLQ messages for %s", m.Key)
		}
		byKey[m.Key] = m
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			m, ok := byKey[c.key]
			if !ok {
				t.Fatal("no DLQ message")
			}
			f := m.Fields
			if f["error_type"] != c.wantType || f["error_code"] != c.wantCode || f["error_message"] == "" {
				t.Errorf("error fields: %s", m.Value)
			}
			if f["original_topic"] != "ftp-tasks" || f["original_key"] != c.key {
				t.Errorf("origin fields: %v %v", f["original_topic"], f["original_key"])
			}
			if _, ok := f["original_offset"].(float64); !ok {
				t.Errorf("original_offset missing")
			}
			var got []byte
			switch f["original_value_encoding"] {
			case "base64":
				got, _ = base64.StdEncoding.DecodeString(f["original_value"].(string))
			case "utf-8":
				got = []byte(f["original_value"].(string))
			default:
				t.Fatalf("original_value_encoding = %v", f["original_value_encoding"])
			}
			if string(got) != string(c.value) {
				t.Errorf("original bytes changed: %d bytes back, %d sent", len(got), len(c.value))
			}
			if m.Headers["origin"] != c.key {
				t.Errorf("headers not kept: %v", m.Headers)
			}
		})
	}
	if m := s.outcome("after-junk"); m.Fields["status"] != "success" {
		t.Fatalf("task after the junk: %s", m.Value)
	}
}

// TestFailureCodes checks each failure code, and that nothing is written
// outside the base directory.
func TestFailureCodes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := newStackWith(t, stackOptions{}, func(s *stack) []config.Endpoint {
		return []config.Endpoint{
			config.FTP("wrong-password", "127.0.0.1", s.ftpA.Port, "alice", "not-the-password"),
			{ID: "down-ftp", Type: "ftp", Host: "127.0.0.1", Port: downPort}, // anonymous
		}
	})
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(s.base, "escape")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(outside, "secret.txt"), "outside the base")
	writeFile(t, filepath.Join(s.ftpA.Root, "x.txt"), "x")

	cases := []struct {
		id, src, srcPath, dst, dstPath string
		want                           string
	}{
		{"missing", "remote-ftp", "/no/such/file.txt", "local", "m.txt", "FILE_NOT_FOUND"},
		{"auth", "wrong-password", "/x.txt", "local", "auth.txt", "AUTH_FAILED"},
		{"down", "down-ftp", "/x.txt", "local", "down.txt", "CONNECTION_ERROR"},
		{"unknown", "nope", "/x.txt", "local", "u.txt", "UNKNOWN_ENDPOINT"},
		{"same-path", "remote-ftp", "/x.txt", "remote-ftp", "//x.txt", "INVALID_TASK"},
		{"traversal-rel", "remote-ftp", "/x.txt", "local", "../../etc/passwd", "PATH_REJECTED"},
		{"traversal-abs", "remote-ftp", "/x.txt", "local", "/../../etc/passwd", "PATH_REJECTED"},
		{"traversal-mid", "remote-ftp", "/x.txt", "local", "a/../../b", "PATH_REJECTED"},
		{"symlink-dst", "remote-ftp", "/x.txt", "local", "escape/written.txt", "PATH_REJECTED"},
		{"symlink-src", "local", "escape/secret.txt", "remote-ftp", "/stolen.txt", "PATH_REJECTED"},
		{"crlf", "remote-ftp", "/x.txt\r\nDELE /x.txt", "local", "c.txt", "PATH_REJECTED"},
	}
	for _, c := range cases {
		s.submit(map[string]any{"task_id": c.id, "src_id": c.src, "src_path": c.srcPath, "dst_id": c.dst, "dst_path": c.dstPath})
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			m := s.outcome(c.id)
			if m.Topic != "ftp-failures" || m.Fields["status"] != "failed" || m.Fields["error_code"] != c.want {
				t.Fatalf("want %s on ftp-failures, got %s: %s", c.want, m.Topic, m.Value)
			}
			msg, _ := m.Fields["error_message"].(string)
			if msg == "" || strings.Contains(msg, "not-the-password") || strings.Contains(msg, "secret;with") {
				t.Errorf("error_message %q is empty or leaks a password", msg)
			}
		})
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("something was written outside the base: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(s.ftpA.Root, "stolen.txt")); err == nil {
		t.Error("a file outside the base was uploaded")
	}
	if got := readFile(t, filepath.Join(s.ftpA.Root, "x.txt")); got != "x" {
		t.Errorf("CRLF injection changed the server: x.txt holds %q", got)
	}
	// A server that is down uses up no attempts: its task waited until the
	// endpoint had been unreachable for retry.max_outage.
	if m := s.outcome("down"); !strings.Contains(m.Fields["error_message"].(string), "unreachable for") || m.Fields["attempts"].(float64) <= 3 {
		t.Errorf("down: want more deliveries than max_attempts 3, failed after retry.max_outage: %s", m.Value)
	}
}

func TestAdminAPI(t *testing.T) {
	s := newStack(t, stackOptions{})
	writeFile(t, filepath.Join(s.ftpA.Root, "a.txt"), "a")
	s.submit(map[string]any{"task_id": "admin-1", "src_id": "remote-ftp", "src_path": "/a.txt", "dst_id": "local", "dst_path": "a.txt"})
	s.outcome("admin-1")
	ctx := context.Background()

	agents, err := s.admin.ListAgents(ctx, &adminv1.ListAgentsRequest{})
	if err != nil || len(agents.Agents) != 2 {
		t.Fatalf("ListAgents = %v, %v", agents, err)
	}
	if a := agents.Agents[0]; a.Slots != 4 || a.Window != 4 || a.AgentId == "" || a.ConnectedSince == nil {
		t.Errorf("agent = %v", a)
	}
	task, err := s.admin.GetTask(ctx, &adminv1.GetTaskRequest{TaskId: "admin-1"})
	if err != nil || task.Task.State != adminv1.TaskState_TASK_STATE_DONE || task.Task.OutcomeStatus != "success" || task.Task.Attempt != 1 {
		t.Errorf("GetTask = %v, %v", task, err)
	}
	if _, err := s.admin.GetTask(ctx, &adminv1.GetTaskRequest{TaskId: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown task: %v", err)
	}
	if _, err := s.admin.GetTask(ctx, &adminv1.GetTaskRequest{}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "task_id") {
		t.Errorf("empty task id: %v", err)
	}
	stats, err := s.admin.GetStats(ctx, &adminv1.GetStatsRequest{})
	if err != nil || stats.OutcomesByCode["success"] != 1 || stats.Agents != 2 || len(stats.Partitions) != 6 {
		t.Errorf("GetStats = %v, %v", stats, err)
	}

	// Pausing intake holds new tasks until resumed.
	if _, err := s.admin.PauseIntake(ctx, &adminv1.PauseIntakeRequest{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the pause reach the consumer
	s.submit(map[string]any{"task_id": "admin-2", "src_id": "remote-ftp", "src_path": "/a.txt", "dst_id": "local", "dst_path": "b.txt"})
	ctx2, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if msgs, _ := s.cons.Next(ctx2); len(msgs) != 0 {
		t.Fatalf("a task ran while intake was paused: %s", msgs[0].Value)
	}
	if _, err := s.admin.ResumeIntake(ctx, &adminv1.ResumeIntakeRequest{}); err != nil {
		t.Fatal(err)
	}
	if m := s.outcome("admin-2"); m.Fields["status"] != "success" {
		t.Errorf("after resume: %s", m.Value)
	}

	if _, err := s.admin.DrainAgent(ctx, &adminv1.DrainAgentRequest{AgentId: "agent-0"}); err != nil {
		t.Errorf("DrainAgent: %v", err)
	}
	if _, err := s.admin.DrainAgent(ctx, &adminv1.DrainAgentRequest{AgentId: "ghost"}); status.Code(err) != codes.NotFound {
		t.Errorf("drain unknown agent: %v", err)
	}
}
