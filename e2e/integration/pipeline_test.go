package integration

import (
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/kafka"
)

const seedTask = kafka.SeedTask

// timestampRE is the original service's format: Python isoformat in UTC.
var timestampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$`)

func TestSeedDownload(t *testing.T) {
	for _, delivery := range []string{"exactly_once", "at_least_once"} {
		t.Run(delivery, func(t *testing.T) {
			s := newStack(t, stackOptions{delivery: delivery})
			writeFile(t, filepath.Join(s.ftpA.Root, "test1.txt"), kafka.SeedContent)
			const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			s.produce("test-001", []byte(seedTask), map[string]string{"traceparent": traceparent})

			m := s.outcome("test-001")
			f := m.Fields
			if m.Topic != "ftp-results" {
				t.Fatalf("outcome on %s: %s", m.Topic, m.Value)
			}
			for k, want := range map[string]any{
				"task_id": "test-001", "status": "success", "src_id": "remote-ftp", "src_path": "/test1.txt",
				"dst_id": "local", "dst_path": "/data/storage/test1.txt", "bytes_transferred": float64(20),
			} {
				if f[k] != want {
					t.Errorf("%s = %v, want %v (message %s)", k, f[k], want, m.Value)
				}
			}
			if ts, _ := f["timestamp"].(string); !timestampRE.MatchString(ts) {
				t.Errorf("timestamp %q not in the original format", ts)
			}
			if _, ok := f["duration_ms"].(float64); !ok {
				t.Errorf("duration_ms missing: %s", m.Value)
			}
			if m.Headers["traceparent"] != traceparent {
				t.Errorf("traceparent not carried to the outcome: %v", m.Headers)
			}
			// The base is not /data/storage here, so the absolute path is
			// taken relative to the base, as the original did.
			got := readFile(t, filepath.Join(s.base, "data/storage/test1.txt"))
			if got != kafka.SeedContent {
				t.Errorf("destination holds %q", got)
			}
			assertNoTempFiles(t, s.base)
		})
	}
}

func TestOneOutcomeEach(t *testing.T) {
	s := newStack(t, stackOptions{agents: 2, slots: 4})
	const n = 200
	for i := range n {
		writeFile(t, filepath.Join(s.ftpA.Root, "many", name(i)), "content of "+name(i))
	}
	start := time.Now()
	for i := range n {
		s.submit(map[string]any{"task_id": "many-" + name(i), "src_id": "remote-ftp", "src_path": "/many/" + name(i),
			"dst_id": "local", "dst_path": "many/" + name(i)})
	}
	got := s.await(n, 60*time.Second, func(m kafka.Message) bool { return len(m.Key) > 5 && m.Key[:5] == "many-" })
	t.Logf("%d tasks in %s", n, time.Since(start))
	// Give duplicates, if any, time to show up.
	time.Sleep(300 * time.Millisecond)
	got = s.await(n, time.Second, func(m kafka.Message) bool { return len(m.Key) > 5 && m.Key[:5] == "many-" })
	seen := map[string]int{}
	for _, m := range got {
		seen[m.Key]++
		if m.Topic != "ftp-results" {
			t.Errorf("%s failed: %s", m.Key, m.Value)
		}
	}
	for i := range n {
		if c := seen["many-"+name(i)]; c != 1 {
			t.Errorf("task many-%s has %d outcomes", name(i), c)
		}
		if got := readFile(t, filepath.Join(s.base, "many", name(i))); got != "content of "+name(i) {
			t.Errorf("file %s holds %q", name(i), got)
		}
	}
}

func name(i int) string {
	return "f" + string(rune('a'+i/26/26%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i%26)) + ".txt"
}

// assertNoTempFiles fails if a temporary or partial file is left below dir.
func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".ftp-pooler.") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}
