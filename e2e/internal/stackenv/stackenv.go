// Package stackenv holds what the end-to-end suites and the benchmark share
// about the servers scripts/e2e starts: where the repository is, the env
// file the scripts write, and sampling processes while they run.
package stackenv

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RepoRoot is the directory holding scripts/e2e: E2E_REPO_ROOT, or the
// first directory above the working directory that has scripts/e2e/ftp.sh.
func RepoRoot() (string, error) {
	if r := os.Getenv("E2E_REPO_ROOT"); r != "" {
		return r, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if st, err := os.Stat(filepath.Join(d, "scripts", "e2e", "ftp.sh")); err == nil && !st.IsDir() {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no scripts/e2e/ftp.sh above %s: run from the repository", dir)
		}
	}
}

// ReadEnvFile parses the KEY=VALUE lines of a file the scripts wrote;
// blank lines and # comments are skipped.
func ReadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	return kv, sc.Err()
}

// Poll calls sample at once and then every interval until stop is closed,
// and once more then when last is set (a final reading of what ran up to
// the end). The returned channel closes when it has finished.
func Poll(interval time.Duration, stop <-chan struct{}, last bool, sample func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			sample()
			select {
			case <-stop:
				if last {
					sample()
				}
				return
			case <-t.C:
			}
		}
	}()
	return done
}
