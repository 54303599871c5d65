//go:build e2e

// Package realstack is the end-to-end suite: the real bin/dispatcher and
// bin/agent, as separate processes, against real Apache Kafka, vsftpd,
// pure-ftpd and an FTPS vsftpd started by scripts/e2e. Tasks are produced
// and outcomes read with kcat, as an operator would.
//
// Run it with `make e2e` (scripts/e2e/run.sh), or, with the servers already
// up (scripts/e2e/kafka.sh start; scripts/e2e/ftp.sh start) and the binaries
// built:
//
//	go test -tags e2e -count=1 -v ./e2e/realstack/...
//
// The harness is e2e/internal/stack, shared with the benchmark and the
// demo. Here: env_test.go (the servers' addresses, TestMain),
// harness_test.go (the harness with a testing.T), stack_test.go (a
// dispatcher and its agents over the standard endpoints, and the checks
// of their outcomes), files_test.go (files on the FTP servers and local
// disk), then one file per group of scenarios.
//
// Tests share the Kafka topics and run one after another: each test's
// dispatcher uses a consumer group of its own whose offsets are set to the
// end of ftp-tasks before it starts, so it sees only that test's tasks.
package realstack

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/kafka"
)

// Env is what the scripts wrote to <state>/env, plus where things are.
type Env struct {
	*stack.Env
	BinDir string
	// WorkDir holds each test's config files, logs and local storage:
	// <state>/realstack/<test name>.
	WorkDir string
	// VSFTPSTLSMax is the newest TLS version the FTPS server offers ("1.3"
	// unless ftp.sh ran with VSFTPS_TLS_MAX=1.2).
	VSFTPSTLSMax string
}

// env is loaded once by TestMain.
var env *Env

// runID makes task ids, consumer groups and directories unique per run, so
// a second run against the same broker and servers does not see the first.
var runID = strconv.FormatInt(time.Now().UnixNano()/1e6%1e9, 36)

func TestMain(m *testing.M) {
	flag.Parse()
	e, err := loadEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "realstack:", err)
		os.Exit(1)
	}
	env = e
	kcat = kafka.Kcat{Brokers: e.Kafka}
	if collector, err = kcat.Collect(kafka.OutcomeTopics...); err != nil {
		fmt.Fprintln(os.Stderr, "realstack:", err)
		os.Exit(1)
	}
	code := m.Run()
	collector.Close()
	os.Exit(code)
}

// loadEnv reads <state>/env (E2E_STATE_DIR, else <repo>/.e2e) and checks
// that the servers answer and the binaries and kcat are there.
func loadEnv() (*Env, error) {
	se, err := stack.LoadEnv()
	if err != nil {
		return nil, fmt.Errorf("%w\n  the end-to-end servers are not set up: run `make e2e`, or scripts/e2e/install.sh,"+
			" scripts/e2e/kafka.sh start and scripts/e2e/ftp.sh start (as root) first", err)
	}
	if len(se.Missing) > 0 {
		return nil, fmt.Errorf("%s lacks %s: restart the servers with scripts/e2e/kafka.sh start and scripts/e2e/ftp.sh start",
			se.Path(), strings.Join(se.Missing, ", "))
	}
	e := &Env{Env: se, BinDir: filepath.Join(se.RepoRoot, "bin"), WorkDir: filepath.Join(se.StateDir, "realstack"),
		VSFTPSTLSMax: se.Values["FTP_VSFTPS_TLS_MAX"]}
	if e.VSFTPSTLSMax == "" {
		e.VSFTPSTLSMax = "1.2" // scripts from before VSFTPS_TLS_MAX capped it
	}
	if b := os.Getenv("E2E_BIN_DIR"); b != "" {
		e.BinDir = b
	}
	if err := stack.CheckBinaries(e.BinDir); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("kcat"); err != nil {
		return nil, fmt.Errorf("kcat not found: run scripts/e2e/install.sh")
	}
	for name, addr := range map[string]string{"kafka": e.Kafka, "vsftpd": e.VSFTPD.Addr, "pure-ftpd": e.PureFTPD.Addr, "vsftps": e.VSFTPS.Addr} {
		if err := stack.Reachable(addr, 3*time.Second); err != nil {
			return nil, fmt.Errorf("%s does not answer on %s (%v): start it with scripts/e2e/kafka.sh start / ftp.sh start", name, addr, err)
		}
	}
	if err := os.MkdirAll(e.WorkDir, 0o755); err != nil {
		return nil, err
	}
	return e, nil
}
