package integration

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
)

func TestDirections(t *testing.T) {
	s := newStack(t, stackOptions{})
	big := make([]byte, 3<<20+17) // several copy buffers, odd size
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.base, "up/report.csv"), "a,b\n1,2\n")
	writeFile(t, filepath.Join(s.ftpA.Root, "relay/big.bin"), string(big))
	writeFile(t, filepath.Join(s.base, "copy/src.txt"), "copied locally")
	writeFile(t, filepath.Join(s.ftpA.Root, "empty.txt"), "")
	writeFile(t, filepath.Join(s.ftpA.Root, "dir with space/파일 ü.txt"), "unicode")

	tasks := []struct {
		id, src, srcPath, dst, dstPath string
		check                          func(t *testing.T)
	}{
		{"upload", "local", "/up/report.csv", "remote-ftp", "/incoming/2025/11/report.csv", func(t *testing.T) {
			if got := readFile(t, filepath.Join(s.ftpA.Root, "incoming/2025/11/report.csv")); got != "a,b\n1,2\n" {
				t.Errorf("uploaded %q", got)
			}
		}},
		{"relay", "remote-ftp", "/relay/big.bin", "archive-ftp", "/archive/big.bin", func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join(s.ftpB.Root, "archive/big.bin"))
			if err != nil || !bytes.Equal(got, big) {
				t.Errorf("relayed %d bytes (err %v), want the %d source bytes", len(got), err, len(big))
			}
		}},
		{"copy", "local", "copy/src.txt", "other-local", "/copied/dst.txt", func(t *testing.T) {
			if got := readFile(t, filepath.Join(s.other, "copied/dst.txt")); got != "copied locally" {
				t.Errorf("copied %q", got)
			}
		}},
		{"empty", "remote-ftp", "/empty.txt", "local", "empty/e.txt", func(t *testing.T) {
			if got := readFile(t, filepath.Join(s.base, "empty/e.txt")); got != "" {
				t.Errorf("empty file holds %q", got)
			}
		}},
		{"unicode", "remote-ftp", "/dir with space/파일 ü.txt", "local", "/deep/a/b/c/d/e/f/파일 ü.txt", func(t *testing.T) {
			if got := readFile(t, filepath.Join(s.base, "deep/a/b/c/d/e/f/파일 ü.txt")); got != "unicode" {
				t.Errorf("unicode file holds %q", got)
			}
		}},
	}
	for _, tc := range tasks {
		s.submit(map[string]any{"task_id": tc.id, "src_id": tc.src, "src_path": tc.srcPath, "dst_id": tc.dst, "dst_path": tc.dstPath})
	}
	for _, tc := range tasks {
		t.Run(tc.id, func(t *testing.T) {
			m := s.outcome(tc.id)
			if m.Topic != "ftp-results" || m.Fields["status"] != "success" {
				t.Fatalf("outcome on %s: %s", m.Topic, m.Value)
			}
			tc.check(t)
		})
	}
	assertNoTempFiles(t, s.base)
	assertNoTempFiles(t, s.ftpA.Root)
	assertNoTempFiles(t, s.ftpB.Root)
}

func TestOverwritePolicy(t *testing.T) {
	s := newStack(t, stackOptions{})
	writeFile(t, filepath.Join(s.ftpA.Root, "new.txt"), "new")
	writeFile(t, filepath.Join(s.base, "keep.txt"), "old")
	writeFile(t, filepath.Join(s.base, "replace.txt"), "old")
	s.submit(map[string]any{"task_id": "keep", "src_id": "remote-ftp", "src_path": "/new.txt", "dst_id": "local", "dst_path": "keep.txt", "overwrite": false})
	s.submit(map[string]any{"task_id": "replace", "src_id": "remote-ftp", "src_path": "/new.txt", "dst_id": "local", "dst_path": "replace.txt"})
	if m := s.outcome("keep"); m.Fields["error_code"] != "DESTINATION_EXISTS" {
		t.Errorf("keep: %s", m.Value)
	}
	if m := s.outcome("replace"); m.Fields["status"] != "success" {
		t.Errorf("replace: %s", m.Value)
	}
	if got := readFile(t, filepath.Join(s.base, "keep.txt")); got != "old" {
		t.Errorf("kept file overwritten: %q", got)
	}
	if got := readFile(t, filepath.Join(s.base, "replace.txt")); got != "new" {
		t.Errorf("replaced file holds %q", got)
	}
}
