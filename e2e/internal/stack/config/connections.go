package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Endpoint is one section of connections.ini. Zero values are left out
// of the file, so the services' defaults apply to them: port 21, login
// anonymous, passive mode, no TLS, pool.max_sessions_per_connection.
type Endpoint struct {
	ID   string
	Type string // ftp, sftp or local

	Host string
	Port int
	User string
	Pass string
	// PassFile and PassEnv name a file or a variable holding the password.
	PassFile string
	PassEnv  string
	// Active writes passive = false.
	Active           bool
	TrustPASVAddress bool
	DisableEPSV      bool
	Encoding         string
	// Timeout bounds connect and login (written in seconds).
	Timeout               time.Duration
	TLS                   string // explicit or implicit
	TLSServerName         string
	TLSCAFile             string
	TLSInsecureSkipVerify bool
	TLSMaxVersion         string
	MaxConnections        int

	// SFTP endpoints.
	KeyFile                  string
	KnownHostsFile           string
	HostKeyFingerprint       string
	InsecureIgnoreHostKey    bool
	MaxSessionsPerConnection int

	BasePath string // local endpoints
}

// FTP is an FTP endpoint with a login.
func FTP(id, host string, port int, user, pass string) Endpoint {
	return Endpoint{ID: id, Type: "ftp", Host: host, Port: port, User: user, Pass: pass}
}

// SFTP is an SFTP endpoint with a password login, its host key checked
// against knownHosts.
func SFTP(id, addr, user, pass, knownHosts string) Endpoint {
	host, port := splitAddr(addr)
	return Endpoint{ID: id, Type: "sftp", Host: host, Port: port, User: user, Pass: pass, KnownHostsFile: knownHosts}
}

func splitAddr(addr string) (string, int) {
	host, p, _ := strings.Cut(addr, ":")
	port, _ := strconv.Atoi(p)
	return host, port
}

// Local is a local endpoint over base.
func Local(id, base string) Endpoint {
	return Endpoint{ID: id, Type: "local", BasePath: base}
}

// Connections is connections.ini, its sections in order.
type Connections []Endpoint

// Endpoint is the section with the given id, to change in place; nil
// when there is none.
func (c Connections) Endpoint(id string) *Endpoint {
	for i := range c {
		if c[i].ID == id {
			return &c[i]
		}
	}
	return nil
}

// INI is the file's text.
func (c Connections) INI() string {
	var b strings.Builder
	for i, e := range c {
		if i > 0 {
			b.WriteString("\n")
		}
		e.write(&b)
	}
	return b.String()
}

func (e Endpoint) write(b *strings.Builder) {
	fmt.Fprintf(b, "[%s]\n", e.ID)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(b, "%s = %s\n", k, v)
		}
	}
	flag := func(k string, on bool, v string) {
		if on {
			kv(k, v)
		}
	}
	kv("type", e.Type)
	kv("host", e.Host)
	flag("port", e.Port != 0, strconv.Itoa(e.Port))
	kv("user", e.User)
	kv("pass", e.Pass)
	kv("pass_file", e.PassFile)
	kv("pass_env", e.PassEnv)
	flag("passive", e.Active, "false")
	flag("trust_pasv_address", e.TrustPASVAddress, "true")
	flag("disable_epsv", e.DisableEPSV, "true")
	kv("encoding", e.Encoding)
	flag("timeout", e.Timeout != 0, strconv.FormatFloat(e.Timeout.Seconds(), 'f', -1, 64))
	kv("tls", e.TLS)
	kv("tls_server_name", e.TLSServerName)
	kv("tls_ca_file", e.TLSCAFile)
	flag("tls_insecure_skip_verify", e.TLSInsecureSkipVerify, "true")
	kv("tls_max_version", e.TLSMaxVersion)
	flag("max_connections", e.MaxConnections != 0, strconv.Itoa(e.MaxConnections))
	kv("key_file", e.KeyFile)
	kv("known_hosts_file", e.KnownHostsFile)
	kv("host_key_fingerprint", e.HostKeyFingerprint)
	flag("insecure_ignore_host_key", e.InsecureIgnoreHostKey, "true")
	flag("max_sessions_per_connection", e.MaxSessionsPerConnection != 0, strconv.Itoa(e.MaxSessionsPerConnection))
	kv("base_path", e.BasePath)
}

// Write writes the file at path (mode 0600: it holds passwords), comment
// as its first line.
func (c Connections) Write(path, comment string) error {
	return os.WriteFile(path, []byte("; "+comment+"\n\n"+c.INI()), 0o600)
}
