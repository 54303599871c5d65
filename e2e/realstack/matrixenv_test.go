//go:build e2e

package realstack

// The compatibility matrix's FTP servers, as scripts/e2e/matrix.sh start
// wrote them to <state>/env: FTP_MATRIX=name,name,... and, for each name
// with K its name in upper case and '-' as '_', FTP_K_ADDR, _USER, _PASS,
// _HOME, _TLS (none|explicit|implicit), _CA (TLS only), _VERSION, _CAP,
// _MODE (passive|active) and _KIND, plus _PASV, _CAP_STAGE and _CAP_REPLY,
// which are only logged.

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
)

// MatrixServer is one server of the matrix. Its FTPServer's Name is the
// matrix name (proftpd-tls), Home the user's "/" on disk.
type MatrixServer struct {
	FTPServer
	Key     string // FTP_<Key>_ADDR...
	TLS     string // none, explicit or implicit
	CA      string // the certificate to trust, when TLS
	Version string // e.g. "ProFTPD 1.3.8+dfsg-4+deb12u5"
	Kind    string // proftpd, pyftpdlib, apache-ftpserver, inetutils-ftpd
	Mode    string // passive, or active: the server refuses PASV and EPSV
	// Cap is how many sessions the server admits per user or per IP.
	Cap int
	// Passive is its passive port range ("-" when it refuses passive
	// mode); CapStage and CapReply are where and how it refuses a session
	// over Cap.
	Passive, CapStage, CapReply string
}

// matrixKey is a matrix name as it appears in the env keys.
func matrixKey(name string) string {
	return strings.ReplaceAll(strings.ToUpper(name), "-", "_")
}

// loadMatrix reads the matrix servers from <state>/env, in FTP_MATRIX's
// order; nil, nil when FTP_MATRIX is not there (matrix.sh did not run) or
// run.sh left the matrix out (E2E_MATRIX=0: the keys of an earlier run may
// still be there, as matrix.sh stop leaves them).
func loadMatrix(e *Env) ([]MatrixServer, error) {
	if os.Getenv("E2E_MATRIX") == "0" {
		return nil, nil
	}
	path := e.Path()
	kv, err := stack.ReadEnvFile(path)
	if err != nil {
		return nil, err
	}
	list := strings.TrimSpace(kv["FTP_MATRIX"])
	if list == "" {
		return nil, nil
	}
	var out []MatrixServer
	var problems []string
	for _, name := range splitComma(list) {
		k := matrixKey(name)
		srv, missing := stack.FTPServerFrom(kv, name, "FTP_"+k)
		get := func(suffix string) string {
			v := kv["FTP_"+k+"_"+suffix]
			if v == "" {
				missing = append(missing, "FTP_"+k+"_"+suffix)
			}
			return v
		}
		m := MatrixServer{
			FTPServer: srv,
			Key:       k,
			TLS:       get("TLS"),
			Version:   get("VERSION"),
			Kind:      get("KIND"),
			Mode:      get("MODE"),
			Passive:   kv["FTP_"+k+"_PASV"],
			CapStage:  kv["FTP_"+k+"_CAP_STAGE"],
			CapReply:  kv["FTP_"+k+"_CAP_REPLY"],
		}
		capStr := get("CAP")
		switch m.TLS {
		case "none", "":
		case "explicit", "implicit":
			m.CA = get("CA")
		default:
			problems = append(problems, fmt.Sprintf("FTP_%s_TLS=%q is none of none, explicit, implicit", k, m.TLS))
		}
		switch m.Mode {
		case "passive", "active", "":
		default:
			problems = append(problems, fmt.Sprintf("FTP_%s_MODE=%q is neither passive nor active", k, m.Mode))
		}
		if capStr != "" {
			if m.Cap, err = strconv.Atoi(capStr); err != nil || m.Cap < 1 {
				problems = append(problems, fmt.Sprintf("FTP_%s_CAP=%q is not a positive number", k, capStr))
			}
		}
		if _, _, err := net.SplitHostPort(m.Addr); err != nil && m.Addr != "" {
			problems = append(problems, fmt.Sprintf("FTP_%s_ADDR=%q is not host:port", k, m.Addr))
		}
		if len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("%s lacks %s", name, strings.Join(missing, ", ")))
		}
		out = append(out, m)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: FTP_MATRIX=%s, but %s: restart the matrix with scripts/e2e/matrix.sh start",
			path, list, strings.Join(problems, "; "))
	}
	return out, nil
}

// Section is a connections.ini section for the server named id, with its
// TLS settings and passive = false for an active-only server; srv gives
// the login (the server's own, or a wrong one), host and port the address
// (the server's, or a closed port).
func (m MatrixServer) Section(id, host string, port int, srv FTPServer) config.Endpoint {
	e := config.FTP(id, host, port, srv.User, srv.Pass)
	if m.TLS == "explicit" || m.TLS == "implicit" {
		// TLS 1.3, which every TLS server of the matrix offers: its session
		// tickets on data connections are what cut uploads short (Apache
		// FtpServer 426 on 20 of 20, pyftpdlib 16 of 20) until the agent
		// closed uploads gracefully.
		e.TLS, e.TLSCAFile, e.TLSMaxVersion = m.TLS, m.CA, "1.3"
	}
	e.Active = m.Mode == "active"
	return e
}

// Label is how the matrix table names the server's TLS and mode.
func (m MatrixServer) Label() string {
	var parts []string
	switch m.TLS {
	case "explicit":
		parts = append(parts, "FTPS explicit")
	case "implicit":
		parts = append(parts, "FTPS implicit")
	default:
		parts = append(parts, "FTP")
	}
	if m.Mode == "active" {
		parts = append(parts, "active only")
	}
	return strings.Join(parts, ", ")
}
