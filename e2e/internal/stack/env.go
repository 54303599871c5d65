// Package stack runs FTP Pooler as an operator runs it: the real
// bin/dispatcher and bin/agent as processes, with config.yaml and
// connections.ini written from typed values (package config), against the
// servers scripts/e2e starts (or the embedded ones of package devstack).
// The end-to-end suite, the chaos suite, the benchmark and the demo all
// build on it; its sub-packages run processes (proc), write the files
// (config) and talk to Kafka (kafka).
package stack

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
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

// FTPServer is one of the FTP servers the scripts run.
type FTPServer struct {
	Name string // vsftpd, pureftpd, vsftps, a matrix server's name
	Addr string // host:port
	Host string
	Port int
	User string
	Pass string
	// Home is the user's "/" on disk (the user is chrooted there).
	Home string
}

// FTPServerFrom reads <prefix>_ADDR, _USER, _PASS and _HOME of the env
// file, and lists those that are empty.
func FTPServerFrom(kv map[string]string, name, prefix string) (FTPServer, []string) {
	var missing []string
	get := func(suffix string) string {
		v := kv[prefix+"_"+suffix]
		if v == "" {
			missing = append(missing, prefix+"_"+suffix)
		}
		return v
	}
	s := FTPServer{Name: name, Addr: get("ADDR"), User: get("USER"), Pass: get("PASS"), Home: get("HOME")}
	if h, p, err := net.SplitHostPort(s.Addr); err == nil {
		s.Host = h
		s.Port, _ = strconv.Atoi(p)
	}
	return s, missing
}

// Path is where an FTP path of the server lies on disk.
func (s FTPServer) Path(p string) string {
	return filepath.Join(s.Home, filepath.FromSlash(strings.TrimPrefix(p, "/")))
}

// Endpoint is a connections.ini section with the server's address and login.
func (s FTPServer) Endpoint(id string) config.Endpoint {
	return config.FTP(id, s.Host, s.Port, s.User, s.Pass)
}

// Env is <state>/env as the scripts wrote it: Kafka's and the FTP servers'
// addresses and logins. What a suite needs of it, it checks itself.
type Env struct {
	RepoRoot string
	// StateDir is E2E_STATE_DIR, else <repo>/.e2e.
	StateDir string
	// Values are every key of the file.
	Values map[string]string
	// Kafka is KAFKA_BROKERS.
	Kafka                    string
	VSFTPD, PureFTPD, VSFTPS FTPServer
	// VSFTPSCA is the FTPS server's self-signed certificate, for tls_ca_file.
	VSFTPSCA string
	// Missing lists the keys above that the file lacks.
	Missing []string
}

// Path is the env file.
func (e *Env) Path() string { return filepath.Join(e.StateDir, "env") }

// LoadEnv reads <state>/env.
func LoadEnv() (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	e := &Env{RepoRoot: root, StateDir: os.Getenv("E2E_STATE_DIR")}
	if e.StateDir == "" {
		e.StateDir = filepath.Join(root, ".e2e")
	}
	if e.Values, err = ReadEnvFile(e.Path()); err != nil {
		return nil, err
	}
	server := func(name, prefix string) FTPServer {
		s, missing := FTPServerFrom(e.Values, name, prefix)
		e.Missing = append(e.Missing, missing...)
		return s
	}
	e.VSFTPD = server("vsftpd", "FTP_VSFTPD")
	e.PureFTPD = server("pureftpd", "FTP_PUREFTPD")
	e.VSFTPS = server("vsftps", "FTP_VSFTPS")
	e.Kafka, e.VSFTPSCA = e.Values["KAFKA_BROKERS"], e.Values["FTP_VSFTPS_CA"]
	for k, v := range map[string]string{"KAFKA_BROKERS": e.Kafka, "FTP_VSFTPS_CA": e.VSFTPSCA} {
		if v == "" {
			e.Missing = append(e.Missing, k)
		}
	}
	return e, nil
}

// Brokers are Kafka's addresses as a list.
func (e *Env) Brokers() []string { return strings.Split(e.Kafka, ",") }

// CheckBinaries fails unless dir holds the dispatcher and agent binaries.
func CheckBinaries(dir string) error {
	for _, b := range []string{"dispatcher", "agent"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("%s not found: run `make build` first", filepath.Join(dir, b))
		}
	}
	return nil
}

// Reachable dials addr once.
func Reachable(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	return c.Close()
}

// FreeAddr is a loopback address nothing listens on right now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// HTTPStatus is the status of GET url.
func HTTPStatus(url string) (int, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Owner is the uid and gid owning path.
func Owner(path string) (uid, gid int, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return -1, -1, err
	}
	sys := st.Sys().(*syscall.Stat_t)
	return int(sys.Uid), int(sys.Gid), nil
}

// MkdirOwned makes dir and its missing parents owned like the nearest
// existing ancestor: below an FTP user's home, the user can then write
// there.
func MkdirOwned(dir string) error {
	var missing []string
	d := dir
	for {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		d = filepath.Dir(d)
	}
	uid, gid, err := Owner(d)
	if err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		if err := os.Chown(missing[i], uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// SFTPServer is one of the SFTP servers scripts/e2e/sftpd.sh runs.
type SFTPServer struct {
	Name string // openssh or proftpd
	Addr string // host:port
	User string
	Pass string
	// Home is the user's "/" on disk (a chroot).
	Home string
	// KnownHosts is a known_hosts file with the server's keys.
	KnownHosts string
	// KeyUser logs in with KeyFile only (OpenSSH).
	KeyUser, KeyFile string
}

// Path is where an SFTP path of the server lies on disk.
func (s SFTPServer) Path(p string) string {
	return filepath.Join(s.Home, filepath.FromSlash(strings.TrimPrefix(p, "/")))
}

// Endpoint is a connections.ini section with the server's address, login
// and known_hosts file.
func (s SFTPServer) Endpoint(id string) config.Endpoint {
	return config.SFTP(id, s.Addr, s.User, s.Pass, s.KnownHosts)
}

// SFTPServers are the SFTP servers the env file names; an error names the
// keys it lacks (sftpd.sh did not run: E2E_SFTP=0).
func (e *Env) SFTPServers() (openssh, proftpd SFTPServer, err error) {
	var missing []string
	get := func(k string) string {
		v := e.Values[k]
		if v == "" {
			missing = append(missing, k)
		}
		return v
	}
	known := get("SFTP_OPENSSH_KNOWN_HOSTS")
	openssh = SFTPServer{Name: "openssh", Addr: get("SFTP_OPENSSH_ADDR"), User: get("SFTP_OPENSSH_USER"), Pass: get("SFTP_OPENSSH_PASS"),
		Home: get("SFTP_OPENSSH_ROOT"), KnownHosts: known, KeyUser: get("SFTP_OPENSSH_KEY_USER"), KeyFile: get("SFTP_OPENSSH_KEY_FILE")}
	proftpd = SFTPServer{Name: "proftpd", Addr: get("SFTP_PROFTPD_ADDR"), User: get("SFTP_PROFTPD_USER"), Pass: get("SFTP_PROFTPD_PASS"),
		Home: get("SFTP_PROFTPD_HOME"), KnownHosts: known}
	if len(missing) > 0 {
		return openssh, proftpd, fmt.Errorf("%s lacks %s: start the SFTP servers with scripts/e2e/sftpd.sh start", e.Path(), strings.Join(missing, ", "))
	}
	return openssh, proftpd, nil
}
