//go:build e2e

package realstack

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/kafka"
)

// The original service's seed task, byte for byte, from the original's
// test setup, which put the local endpoint at seedBase.
const (
	seedTask    = kafka.SeedTask
	seedContent = kafka.SeedContent
	seedBase    = "/data/storage"
)

// originalConfig is the original service's config.yaml (its k8s/test
// ConfigMap, as in services/internal/config's tests) with only the broker
// addresses changed: bootstrap_servers stays a YAML list.
func originalConfig() string {
	var brokers strings.Builder
	for _, b := range env.Brokers() {
		fmt.Fprintf(&brokers, "    - %q\n", b)
	}
	return `kafka:
  bootstrap_servers:
` + brokers.String() + `  consumer_group: "ftp-pooler-test"
  input_topic: "ftp-tasks"
  result_topic: "ftp-results"
  fail_topic: "ftp-failures"
  dlq_topic: "ftp-tasks-dlq"
  max_retries: 3
  base_backoff_ms: 100
  max_backoff_ms: 10000

pool:
  max_sessions_per_pod: 50
  max_sessions_per_connection: 10
  session_timeout_seconds: 300
  prewarm_enabled: false
  prewarm_sessions_per_connection: 2

transfer:
  transfer_timeout_seconds: 300
  connect_timeout_seconds: 30

circuit_breaker:
  failure_threshold: 5
  success_threshold: 2
  timeout_seconds: 60
  half_open_max_calls: 1

api:
  host: "0.0.0.0"
  port: 8080

metrics:
  port: 9090

logging:
  level: "DEBUG"
  format: "json"
`
}

// originalConnections is the original's connections.ini with the FTP
// server's address changed (its user and password are vsftpd's).
func originalConnections() string {
	return fmt.Sprintf(`[remote-ftp]
type = ftp
host = %s
port = %d
user = %s
pass = %s

[local]
type = local
base_path = /data/storage
`, env.VSFTPD.Host, env.VSFTPD.Port, env.VSFTPD.User, env.VSFTPD.Pass)
}

// TestSeed runs the original's seed task against vsftpd with the
// original's config.yaml and connections.ini.
func TestSeed(t *testing.T) {
	if env.VSFTPD.User != "ftpuser" || env.VSFTPD.Pass != "ftppass" {
		t.Logf("note: vsftpd's login is %s, not the original's ftpuser/ftppass", env.VSFTPD.User)
	}
	src := env.VSFTPD.Path("/test1.txt")
	PutFile(t, src, []byte(seedContent))
	must(t, os.MkdirAll(seedBase, 0o755))
	dst := seedBase + "/test1.txt"
	if err := os.Remove(dst); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	// The listen addresses go on the command line (api.port 8080 would be
	// the dispatcher's HTTP address); the files stay the original's, byte
	// for byte: they are what this test runs, not a template of the harness.
	files := &stack.Files{Config: filepath.Join(t.TempDir(), "config.yaml"), Connections: filepath.Join(t.TempDir(), "connections.ini")}
	must(t, os.WriteFile(files.Config, []byte(originalConfig()), 0o644))
	must(t, os.WriteFile(files.Connections, []byte(originalConnections()), 0o600))
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
	got, err := os.ReadFile(dst)
	if err != nil || string(got) != seedContent {
		t.Errorf("%s holds %q (%v), want %q", dst, got, err, seedContent)
	}
	if b, _ := os.ReadFile(src); string(b) != seedContent {
		t.Errorf("the source changed: %q", b)
	}
	if tmp := TempFiles(seedBase); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	// Exactly one outcome, also after the transaction settles.
	time.Sleep(time.Second)
	if n := len(collector.Messages("test-001", "", s.Since)); n != 1 {
		t.Errorf("%d outcomes for test-001, want 1", n)
	}
}
