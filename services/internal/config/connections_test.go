package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// originalConnections is the original service's test connections.ini.
const originalConnections = `[remote-ftp]
type = ftp
host = 192.168.3.18
port = 21
user = ftpuser
pass = ftppass

[local]
type = local
base_path = /data/storage
`

func noEnv(string) string { return "" }

func TestParseConnectionsOriginal(t *testing.T) {
	t.Parallel()
	c, err := ParseConnections([]byte(originalConnections), "/", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	ftp, ok := c.Endpoint("remote-ftp")
	if !ok {
		t.Fatal("remote-ftp missing")
	}
	if ftp.Type != TypeFTP || ftp.Address() != "192.168.3.18:21" || ftp.User != "ftpuser" ||
		ftp.Password.Reveal() != "ftppass" || ftp.Active || ftp.TLS != TLSNone {
		t.Errorf("remote-ftp = %+v", ftp)
	}
	local, _ := c.Endpoint("local")
	if local.Type != TypeLocal || local.BasePath != "/data/storage" {
		t.Errorf("local = %+v", local)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings = %v", c.Warnings)
	}
	if got := strings.Join(c.IDs(), ","); got != "local,remote-ftp" {
		t.Errorf("IDs = %s", got)
	}
}

func TestParseConnections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ini     string
		check   func(t *testing.T, c *Connections)
		wantErr string
	}{
		{
			name: "percent and semicolon in password are literal",
			ini:  "[a]\ntype = ftp\nhost = h\npass = p%40ss;word # not a comment\n",
			check: func(t *testing.T, c *Connections) {
				if got := c.Endpoints["a"].Password.Reveal(); got != "p%40ss;word # not a comment" {
					t.Errorf("password = %q", got)
				}
			},
		},
		{
			name: "password key spelt password",
			ini:  "[a]\ntype = ftp\nhost = h\npassword = %(x)s\n",
			check: func(t *testing.T, c *Connections) {
				if got := c.Endpoints["a"].Password.Reveal(); got != "%(x)s" {
					t.Errorf("password = %q", got)
				}
			},
		},
		{
			name: "inline comments stripped from other keys",
			ini:  "[a]\ntype = FTP ; upper case type\nhost = h # the host\nport = 2121 ; custom\n",
			check: func(t *testing.T, c *Connections) {
				e := c.Endpoints["a"]
				if e.Type != TypeFTP || e.Host != "h" || e.Port != 2121 {
					t.Errorf("endpoint = %+v", e)
				}
			},
		},
		{
			name: "colon separator, upper-case keys, comments, BOM, CRLF",
			ini:  "\ufeff# comment\r\n; another\r\n[a]\r\nTYPE: ftp\r\nHost: h\r\n",
			check: func(t *testing.T, c *Connections) {
				if c.Endpoints["a"].Host != "h" {
					t.Errorf("endpoint = %+v", c.Endpoints["a"])
				}
			},
		},
		{
			name: "defaults anonymous",
			ini:  "[a]\ntype = ftp\nhost = h\n",
			check: func(t *testing.T, c *Connections) {
				e := c.Endpoints["a"]
				if e.User != "anonymous" || e.Port != 21 {
					t.Errorf("endpoint = %+v", e)
				}
			},
		},
		{
			name: "DEFAULT section inherited",
			ini:  "[DEFAULT]\nuser = shared\npass = s3cret\n[a]\ntype = ftp\nhost = h1\n[b]\ntype = ftp\nhost = h2\nuser = own\n",
			check: func(t *testing.T, c *Connections) {
				if c.Endpoints["a"].User != "shared" || c.Endpoints["b"].User != "own" || c.Endpoints["b"].Password.Reveal() != "s3cret" {
					t.Errorf("a=%+v b=%+v", c.Endpoints["a"], c.Endpoints["b"])
				}
			},
		},
		{
			name: "indented file",
			ini:  "[a]\n    type = local\n    base_path = /x\n",
			check: func(t *testing.T, c *Connections) {
				if c.Endpoints["a"].BasePath != "/x" {
					t.Errorf("a = %+v", c.Endpoints["a"])
				}
			},
		},
		{
			name: "new keys",
			ini:  "[a]\ntype = ftp\nhost = h\ntls = explicit\ntls_insecure_skip_verify = yes\nmax_connections = 3\ntimeout = 2.5\n",
			check: func(t *testing.T, c *Connections) {
				e := c.Endpoints["a"]
				if e.TLS != TLSExplicit || !e.TLSInsecureSkipVerify || e.MaxConnections != 3 || e.Timeout != 2500*time.Millisecond {
					t.Errorf("a = %+v", e)
				}
			},
		},
		{
			name: "passive false is active mode",
			ini:  "[a]\ntype = ftp\nhost = h\npassive = false\nfoo = bar\n",
			check: func(t *testing.T, c *Connections) {
				if len(c.Warnings) != 1 || !c.Endpoints["a"].Active {
					t.Errorf("warnings = %v, active %v", c.Warnings, c.Endpoints["a"].Active)
				}
			},
		},
		{
			name: "DEFAULT keys of another type are not unknown",
			ini:  "[DEFAULT]\nuser = shared\ntls = explicit\nbase_path = /srv\n[a]\ntype = local\n[b]\ntype = ftp\nhost = h\n",
			check: func(t *testing.T, c *Connections) {
				if len(c.Warnings) != 0 {
					t.Errorf("warnings = %v", c.Warnings)
				}
				if a, b := c.Endpoints["a"], c.Endpoints["b"]; a.BasePath != "/srv" || b.User != "shared" || b.TLS != TLSExplicit {
					t.Errorf("a = %+v, b = %+v", a, b)
				}
			},
		},
		{
			name: "every key",
			ini: "[a]\ntype = ftp\nhost = h\nport = 990\nuser = u\npass = p\npassive = yes\ntimeout = 3\ntls = implicit\n" +
				"tls_server_name = ftp.example.com\ntls_ca_file = ca.pem\ntls_insecure_skip_verify = no\ntls_max_version = 1.3\n" +
				"max_connections = 4\ntrust_pasv_address = on\ndisable_epsv = off\nencoding = latin1\nport_range = 1-2\n",
			check: func(t *testing.T, c *Connections) {
				want := Endpoint{ID: "a", Type: TypeFTP, Host: "h", Port: 990, User: "u", Password: "p", TrustPASVAddress: true,
					Encoding: EncodingLatin1, Timeout: 3 * time.Second, TLS: TLSImplicit, TLSServerName: "ftp.example.com",
					TLSCAFile: "/ca.pem", TLSMaxVersion: "1.3", MaxConnections: 4}
				if got := *c.Endpoints["a"]; !reflect.DeepEqual(got, want) {
					t.Errorf("endpoint\n got %+v\nwant %+v", got, want)
				}
				if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], `[a] line 18: unknown key "port_range" ignored`) {
					t.Errorf("warnings = %v, want only port_range's", c.Warnings)
				}
			},
		},
		{
			name: "quirk switches",
			ini:  "[a]\ntype = ftp\nhost = h\ntrust_pasv_address = yes\ndisable_epsv = true\nencoding = ISO-8859-1\n[b]\ntype = ftp\nhost = h\n",
			check: func(t *testing.T, c *Connections) {
				a, b := c.Endpoints["a"], c.Endpoints["b"]
				if !a.TrustPASVAddress || !a.DisableEPSV || a.Encoding != EncodingLatin1 || a.Active {
					t.Errorf("a = %+v", a)
				}
				if b.TrustPASVAddress || b.DisableEPSV || b.Encoding != EncodingUTF8 || b.Active {
					t.Errorf("defaults = %+v", b)
				}
			},
		},
		{name: "bad encoding", ini: "[a]\ntype = ftp\nhost = h\nencoding = cp1252\n", wantErr: `key "encoding" (line 4): must be utf-8 or latin-1`},
		{name: "bad disable_epsv", ini: "[a]\ntype = ftp\nhost = h\ndisable_epsv = sometimes\n", wantErr: `key "disable_epsv"`},
		{name: "active mode with TLS", ini: "[a]\ntype = ftp\nhost = h\ntls = explicit\npassive = false\n", wantErr: `active mode) works only without TLS`},
		{name: "missing type", ini: "[a]\nhost = h\n", wantErr: `[a]: missing required key "type"`},
		{name: "unknown type", ini: "[a]\ntype = scp\nhost = h\n", wantErr: `[a] key "type" (line 2): unknown endpoint type "scp"`},
		{name: "missing host", ini: "[a]\ntype = ftp\n", wantErr: `missing required key "host"`},
		{name: "missing base_path", ini: "[a]\ntype = local\n", wantErr: `missing required key "base_path"`},
		{name: "relative base_path", ini: "[a]\ntype = local\nbase_path = data\n", wantErr: "absolute"},
		{name: "bad port", ini: "[a]\ntype = ftp\nhost = h\nport = 99999\n", wantErr: `key "port"`},
		{name: "bad passive", ini: "[a]\ntype = ftp\nhost = h\npassive = maybe\n", wantErr: `key "passive"`},
		{name: "bad tls", ini: "[a]\ntype = ftp\nhost = h\ntls = sometimes\n", wantErr: `key "tls"`},
		{name: "bad tls version", ini: "[a]\ntype = ftp\nhost = h\ntls_max_version = 1.1\n", wantErr: `key "tls_max_version"`},
		{name: "two passwords", ini: "[a]\ntype = ftp\nhost = h\npass = x\npassword = y\n", wantErr: "set only one"},
		{name: "duplicate section", ini: "[a]\ntype = local\nbase_path = /x\n[a]\ntype = local\nbase_path = /y\n", wantErr: "already defined"},
		{name: "duplicate key", ini: "[a]\ntype = ftp\nhost = h\nhost = i\n", wantErr: "already set"},
		{name: "key before section", ini: "type = ftp\n", wantErr: "outside of any"},
		{name: "continuation", ini: "[a]\ntype = ftp\nhost = h\n  more\n", wantErr: "multi-line"},
		{name: "no equals", ini: "[a]\njunk\n", wantErr: "expected"},
		{name: "unclosed section", ini: "[a\n", wantErr: "closing"},
		{name: "no endpoints", ini: "# empty\n", wantErr: "no endpoints"},
		{name: "pass_env unset", ini: "[a]\ntype = ftp\nhost = h\npass_env = NOPE\n", wantErr: `[a] key "pass_env" (line 4): environment variable NOPE is empty or unset`},
		{name: "pass_file unreadable", ini: "[a]\ntype = ftp\nhost = h\npass_file = /nonexistent/pw\n", wantErr: `[a] key "pass_file" (line 4): open /nonexistent/pw`},
		{name: "missing type names the types", ini: "[a]\nhost = h\n", wantErr: `[a]: missing required key "type" (ftp, local or sftp)`},
		{name: "unknown type names the types", ini: "[a]\ntype = scp\n", wantErr: `unknown endpoint type "scp" (want ftp, local or sftp)`},
		{name: "missing host names the type", ini: "[a]\ntype = ftp\nhost =  \n", wantErr: `[a]: missing required key "host" for an ftp endpoint`},
		{name: "empty base_path", ini: "[a]\ntype = local\nbase_path =\n", wantErr: `[a]: missing required key "base_path" for a local endpoint`},
		{name: "bad port text", ini: "[a]\ntype = ftp\nhost = h\nport = ftp\n", wantErr: `[a] key "port" (line 4): must be a port number 1-65535, got "ftp"`},
		{name: "zero timeout", ini: "[a]\ntype = ftp\nhost = h\ntimeout = 0\n", wantErr: `[a] key "timeout" (line 4): must be a positive number of seconds, got "0"`},
		{name: "bad max_connections", ini: "[a]\ntype = ftp\nhost = h\nmax_connections = 0\n", wantErr: `[a] key "max_connections" (line 4): must be a positive integer, got "0"`},
		{name: "bad trust_pasv_address", ini: "[a]\ntype = ftp\nhost = h\ntrust_pasv_address = perhaps\n", wantErr: `[a] key "trust_pasv_address" (line 4): must be a boolean`},
		{name: "bad tls_insecure_skip_verify", ini: "[a]\ntype = ftp\nhost = h\ntls_insecure_skip_verify = 2\n", wantErr: `[a] key "tls_insecure_skip_verify" (line 4): must be a boolean`},
		{name: "bad tls message", ini: "[a]\ntype = ftp\nhost = h\ntls = ssl\n", wantErr: `[a] key "tls" (line 4): must be none, explicit or implicit, got "ssl"`},
		{name: "active mode with TLS names passive", ini: "[a]\ntype = ftp\nhost = h\ntls = implicit\npassive = no\n", wantErr: `[a] key "passive" (line 5): passive = false (active mode) works only without TLS; this endpoint has tls = implicit`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := ParseConnections([]byte(tc.ini), "/", noEnv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestPasswordSources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("from;file%\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FTP_PW": "from-env"}
	ini := "[f]\ntype = ftp\nhost = h\npass_file = pw\n[e]\ntype = ftp\nhost = h\npass_env = FTP_PW\n"
	c, err := ParseConnections([]byte(ini), dir, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Endpoints["f"].Password.Reveal(); got != "from;file%" {
		t.Errorf("pass_file = %q", got)
	}
	if got := c.Endpoints["e"].Password.Reveal(); got != "from-env" {
		t.Errorf("pass_env = %q", got)
	}
}

func TestLoadConnectionsErrorsNameTheFile(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "connections.ini", "[a]\ntype = nope\n")
	_, err := LoadConnections(path, noEnv)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"type"`) {
		t.Fatalf("err = %v", err)
	}
	_, err = LoadConnections(filepath.Join(t.TempDir(), "missing.ini"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "missing.ini") {
		t.Fatalf("err = %v", err)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	e := &Endpoint{ID: "a", Password: "hunter2"}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "endpoint", e, "pw", e.Password)
	js, _ := json.Marshal(e)
	for _, s := range []string{fmt.Sprint(e.Password), fmt.Sprintf("%v %+v %#v", e, e, e), string(js), logged.String()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("secret leaked: %s", s)
		}
	}
}

func FuzzParseConnections(f *testing.F) {
	f.Add([]byte(originalConnections))
	f.Add([]byte("[DEFAULT]\nuser=u\n[a]\ntype=ftp\nhost=h\npass=%;#\n"))
	f.Add([]byte("[a]\n  type = local\n  base_path = /x ; c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConnections(data, "/nonexistent", noEnv)
		if err != nil {
			return
		}
		for id, e := range c.Endpoints {
			if id == "" || e.ID != id {
				t.Fatalf("endpoint id %q stored as %q", e.ID, id)
			}
			switch e.Type {
			case TypeFTP:
				if e.Host == "" || e.Port < 1 || e.Port > 65535 {
					t.Fatalf("invalid ftp endpoint accepted: %+v", e)
				}
			case TypeLocal:
				if !filepath.IsAbs(e.BasePath) {
					t.Fatalf("relative base accepted: %+v", e)
				}
			default:
				t.Fatalf("unknown type accepted: %q", e.Type)
			}
		}
	})
}
