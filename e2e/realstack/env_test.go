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
// Layout: env_test.go (the servers' addresses, TestMain), procs_test.go
// (starting, signalling and restarting the binaries), stack_test.go (a
// dispatcher and its agents with their config files), kafka_test.go (kcat
// producer and outcome collector), files_test.go (files on the FTP servers
// and local disk), then one file per group of scenarios.
//
// Tests share the Kafka topics and run one after another: each test's
// dispatcher uses a consumer group of its own whose offsets are set to the
// end of ftp-tasks before it starts, so it sees only that test's tasks.
package realstack

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stackenv"
)

// FTPServer is one of the FTP servers scripts/e2e/ftp.sh runs.
type FTPServer struct {
	Name string // vsftpd, pureftpd, vsftps
	Addr string // host:port
	Host string
	Port int
	User string
	Pass string
	// Home is the user's "/" on disk (the user is chrooted there).
	Home string
}

// Env is what the scripts wrote to <state>/env, plus where things are.
type Env struct {
	RepoRoot string
	StateDir string
	BinDir   string
	// WorkDir holds each test's config files, logs and local storage:
	// <state>/realstack/<test name>.
	WorkDir      string
	KafkaBrokers string
	VSFTPD       FTPServer
	PureFTPD     FTPServer
	VSFTPS       FTPServer
	// VSFTPSCA is the FTPS server's self-signed certificate, for tls_ca_file.
	VSFTPSCA string
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
	if err := startCollector(); err != nil {
		fmt.Fprintln(os.Stderr, "realstack:", err)
		os.Exit(1)
	}
	code := m.Run()
	collector.close()
	os.Exit(code)
}

// loadEnv reads <state>/env (E2E_STATE_DIR, else <repo>/.e2e) and checks
// that the servers answer and the binaries and kcat are there.
func loadEnv() (*Env, error) {
	root, err := stackenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	state := os.Getenv("E2E_STATE_DIR")
	if state == "" {
		state = filepath.Join(root, ".e2e")
	}
	path := filepath.Join(state, "env")
	kv, err := stackenv.ReadEnvFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w\n  the end-to-end servers are not set up: run `make e2e`, or scripts/e2e/install.sh,"+
			" scripts/e2e/kafka.sh start and scripts/e2e/ftp.sh start (as root) first", err)
	}
	var missing []string
	get := func(k string) string {
		v := kv[k]
		if v == "" {
			missing = append(missing, k)
		}
		return v
	}
	server := func(name, prefix string) FTPServer {
		s := FTPServer{Name: name, Addr: get(prefix + "_ADDR"), User: get(prefix + "_USER"), Pass: get(prefix + "_PASS"), Home: get(prefix + "_HOME")}
		if h, p, err := net.SplitHostPort(s.Addr); err == nil {
			s.Host = h
			s.Port, _ = strconv.Atoi(p)
		}
		return s
	}
	e := &Env{
		RepoRoot:     root,
		StateDir:     state,
		BinDir:       filepath.Join(root, "bin"),
		WorkDir:      filepath.Join(state, "realstack"),
		KafkaBrokers: get("KAFKA_BROKERS"),
		VSFTPD:       server("vsftpd", "FTP_VSFTPD"),
		PureFTPD:     server("pureftpd", "FTP_PUREFTPD"),
		VSFTPS:       server("vsftps", "FTP_VSFTPS"),
		VSFTPSCA:     get("FTP_VSFTPS_CA"),
		VSFTPSTLSMax: kv["FTP_VSFTPS_TLS_MAX"],
	}
	if e.VSFTPSTLSMax == "" {
		e.VSFTPSTLSMax = "1.2" // scripts from before VSFTPS_TLS_MAX capped it
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s lacks %s: restart the servers with scripts/e2e/kafka.sh start and scripts/e2e/ftp.sh start",
			path, strings.Join(missing, ", "))
	}
	if b := os.Getenv("E2E_BIN_DIR"); b != "" {
		e.BinDir = b
	}
	for _, b := range []string{"dispatcher", "agent"} {
		if _, err := os.Stat(filepath.Join(e.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s not found: run `make build` first", filepath.Join(e.BinDir, b))
		}
	}
	if _, err := exec.LookPath("kcat"); err != nil {
		return nil, fmt.Errorf("kcat not found: run scripts/e2e/install.sh")
	}
	for name, addr := range map[string]string{"kafka": e.KafkaBrokers, "vsftpd": e.VSFTPD.Addr, "pure-ftpd": e.PureFTPD.Addr, "vsftps": e.VSFTPS.Addr} {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return nil, fmt.Errorf("%s does not answer on %s (%v): start it with scripts/e2e/kafka.sh start / ftp.sh start", name, addr, err)
		}
		c.Close()
	}
	if err := os.MkdirAll(e.WorkDir, 0o755); err != nil {
		return nil, err
	}
	return e, nil
}
