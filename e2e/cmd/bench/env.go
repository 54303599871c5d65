package main

// Where the servers are: <state>/env written by scripts/e2e (as the
// end-to-end suite reads it), or the embedded broker when no Kafka answers.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/devstack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stackenv"
)

// ftpServer is one FTP server of scripts/e2e/ftp.sh.
type ftpServer struct {
	Name, Addr, Host, User, Pass string
	Port                         int
	// Home is the user's "/" on disk.
	Home string
}

// path is where an FTP path lies on disk.
func (s ftpServer) path(p string) string {
	return filepath.Join(s.Home, filepath.FromSlash(strings.TrimPrefix(p, "/")))
}

// url is the FTP URL of p with credentials, for curl.
func (s ftpServer) url(p string) string {
	return fmt.Sprintf("ftp://%s:%s@%s%s", s.User, s.Pass, s.Addr, p)
}

type benchEnv struct {
	Root, State, Bin, Work string
	Kafka                  string
	// KafkaKind is "Apache Kafka 4.1.2" or "embedded kfake broker".
	KafkaKind string
	VSFTPD    ftpServer
	PureFTPD  ftpServer
	embedded  *devstack.Broker
}

func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func loadEnv(binDir string, forceEmbedded bool) (*benchEnv, error) {
	root, err := stackenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	state := os.Getenv("E2E_STATE_DIR")
	if state == "" {
		state = filepath.Join(root, ".e2e")
	}
	kv, err := stackenv.ReadEnvFile(filepath.Join(state, "env"))
	if err != nil {
		return nil, fmt.Errorf("%w\n  the FTP servers are not set up: run scripts/bench/run.sh (make bench), or scripts/e2e/install.sh and scripts/e2e/ftp.sh start (as root)", err)
	}
	server := func(name, prefix string) ftpServer {
		s := ftpServer{Name: name, Addr: kv[prefix+"_ADDR"], User: kv[prefix+"_USER"], Pass: kv[prefix+"_PASS"], Home: kv[prefix+"_HOME"]}
		if h, p, err := net.SplitHostPort(s.Addr); err == nil {
			s.Host = h
			s.Port, _ = strconv.Atoi(p)
		}
		return s
	}
	if binDir == "" {
		binDir = filepath.Join(root, "bin")
	}
	e := &benchEnv{Root: root, State: state, Bin: binDir, Work: filepath.Join(state, "bench"),
		VSFTPD: server("vsftpd", "FTP_VSFTPD"), PureFTPD: server("pureftpd", "FTP_PUREFTPD")}
	if e.VSFTPD.Addr == "" || !answers(e.VSFTPD.Addr) {
		return nil, fmt.Errorf("vsftpd does not answer on %q: start it with scripts/e2e/ftp.sh start", e.VSFTPD.Addr)
	}
	if e.PureFTPD.Addr != "" && !answers(e.PureFTPD.Addr) {
		e.PureFTPD = ftpServer{}
	}
	for _, b := range []string{"dispatcher", "agent"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return nil, fmt.Errorf("%s not found: run `make build` first", filepath.Join(binDir, b))
		}
	}
	if _, err := exec.LookPath("curl"); err != nil {
		return nil, fmt.Errorf("curl not found: run scripts/e2e/install.sh")
	}
	if k := kv["KAFKA_BROKERS"]; k != "" && !forceEmbedded && answers(strings.Split(k, ",")[0]) {
		e.Kafka, e.KafkaKind = k, "Apache Kafka "+kafkaVersion()
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

// ownerOf is the uid and gid owning path.
func ownerOf(path string) (int, int) {
	st, err := os.Stat(path)
	if err != nil {
		return -1, -1
	}
	sys := st.Sys().(*syscall.Stat_t)
	return int(sys.Uid), int(sys.Gid)
}

// mkdirOwned makes dir (and parents) owned like the FTP home, so the FTP
// user can write there.
func mkdirOwned(home, dir string) error {
	uid, gid := ownerOf(home)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		_ = os.Chown(missing[i], uid, gid)
	}
	return nil
}
