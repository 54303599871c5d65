package main

// Where the servers are: <state>/env written by scripts/e2e (as the
// end-to-end suite reads it), or the embedded broker when no Kafka answers.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/devstack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
)

// ftpURL is the FTP URL of p on s with credentials, for curl.
func ftpURL(s stack.FTPServer, p string) string {
	return fmt.Sprintf("ftp://%s:%s@%s%s", s.User, s.Pass, s.Addr, p)
}

type benchEnv struct {
	*stack.Env
	Bin, Work string
	// KafkaKind is "Apache Kafka 4.1.2" or "embedded kfake broker".
	KafkaKind string
	// SFTP is OpenSSH's sshd from scripts/e2e/sftpd.sh; its Addr is empty
	// when the SFTP servers are not running (the sftp section is skipped).
	SFTP     stack.SFTPServer
	embedded *devstack.Broker
}

func answers(addr string) bool { return stack.Reachable(addr, 2*time.Second) == nil }

func loadEnv(binDir string, forceEmbedded bool) (*benchEnv, error) {
	se, err := stack.LoadEnv()
	if err != nil {
		return nil, fmt.Errorf("%w\n  the FTP servers are not set up: run scripts/bench/run.sh (make bench), or scripts/e2e/install.sh and scripts/e2e/ftp.sh start (as root)", err)
	}
	if binDir == "" {
		binDir = filepath.Join(se.RepoRoot, "bin")
	}
	e := &benchEnv{Env: se, Bin: binDir, Work: filepath.Join(se.StateDir, "bench")}
	if e.VSFTPD.Addr == "" || !answers(e.VSFTPD.Addr) {
		return nil, fmt.Errorf("vsftpd does not answer on %q: start it with scripts/e2e/ftp.sh start", e.VSFTPD.Addr)
	}
	if e.PureFTPD.Addr != "" && !answers(e.PureFTPD.Addr) {
		e.PureFTPD = stack.FTPServer{}
	}
	if openssh, _, err := se.SFTPServers(); err == nil && answers(openssh.Addr) {
		e.SFTP = openssh
	}
	if err := stack.CheckBinaries(binDir); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("curl"); err != nil {
		return nil, fmt.Errorf("curl not found: run scripts/e2e/install.sh")
	}
	if k := e.Kafka; k != "" && !forceEmbedded && answers(strings.Split(k, ",")[0]) {
		e.KafkaKind = "Apache Kafka " + kafkaVersion()
	} else {
		b, err := devstack.StartBroker(0)
		if err != nil {
			return nil, err
		}
		e.embedded, e.Kafka, e.KafkaKind = b, b.Addr, "embedded kfake broker (no Kafka answered)"
	}
	if err := os.MkdirAll(e.Work, 0o755); err != nil {
		return nil, err
	}
	return e, nil
}

func kafkaVersion() string {
	if v := os.Getenv("KAFKA_VERSION"); v != "" {
		return v
	}
	return "4.1.2"
}

func (e *benchEnv) close() {
	if e.embedded != nil {
		e.embedded.Close()
	}
}
