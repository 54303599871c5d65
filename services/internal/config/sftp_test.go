package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testFingerprint = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"

func TestParseSFTP(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"id_ed25519": "KEY", "pp": "secret\n", "known_hosts": "[h]:2222 ssh-ed25519 AAAA\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ini := `[pw]
type = SFTP
host = h
user = u
pass = p
host_key_fingerprint = ` + testFingerprint + `

[key]
type = sftp
host = h
port = 2222
user = u
key_file = id_ed25519
key_passphrase_file = pp
known_hosts_file = known_hosts
max_connections = 3
max_sessions_per_connection = 4
timeout = 5

[insecure]
type = sftp
host = h
user = u
pass = p
insecure_ignore_host_key = true
`
	c, err := ParseConnections([]byte(ini), dir, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	pw := c.Endpoints["pw"]
	if pw.Type != TypeSFTP || pw.Port != 22 || pw.Password.Reveal() != "p" || len(pw.SFTP.HostKeyFingerprints) != 1 ||
		pw.SFTP.MaxSessionsPerConnection != DefaultSFTPSessionsPerConnection || pw.SFTP.PrivateKey != "" {
		t.Errorf("pw: %+v", pw)
	}
	key := c.Endpoints["key"]
	if key.Port != 2222 || key.Password.Reveal() != "" || key.SFTP.PrivateKey.Reveal() != "KEY" || key.SFTP.KeyPassphrase.Reveal() != "secret" ||
		key.SFTP.KnownHostsFile != filepath.Join(dir, "known_hosts") || key.MaxConnections != 3 || key.SFTP.MaxSessionsPerConnection != 4 {
		t.Errorf("key: %+v", key)
	}
	if !c.Endpoints["insecure"].SFTP.InsecureIgnoreHostKey {
		t.Error("insecure_ignore_host_key not read")
	}
	warned := false
	for _, w := range c.Warnings {
		if strings.Contains(w, "[insecure]") && strings.Contains(w, "insecure_ignore_host_key") {
			warned = true
		}
		if strings.Contains(w, "unknown key") {
			t.Errorf("sftp key reported unknown: %s", w)
		}
	}
	if !warned {
		t.Errorf("no warning for insecure_ignore_host_key: %v", c.Warnings)
	}
}

func TestParseSFTPErrors(t *testing.T) {
	base := "[s]\ntype = sftp\nhost = h\nuser = u\npass = p\n"
	fp := "host_key_fingerprint = " + testFingerprint + "\n"
	tests := []struct{ name, ini, want string }{
		{"no host key", base, "needs the server's host key: set known_hosts_file"},
		{"no host key says how", base, "ssh-keyscan -p PORT HOST | ssh-keygen -lf -"},
		{"bad fingerprint", base + "host_key_fingerprint = MD5:12:34\n", `"MD5:12:34" is not a SHA256 fingerprint`},
		{"missing known_hosts", base + "known_hosts_file = /nonexistent/known_hosts\n", `key "known_hosts_file" (line 6)`},
		{"no credentials", "[s]\ntype = sftp\nhost = h\nuser = u\n" + fp, "needs a password (pass, pass_file or pass_env) or a private key (key_file)"},
		{"no user", "[s]\ntype = sftp\nhost = h\npass = p\n" + fp, `"user"`},
		{"missing key file", base + fp + "key_file = /nonexistent/id\n", `key "key_file"`},
		{"passphrase without key", base + fp + "key_passphrase_file = /x\n", "key_passphrase_file"},
		{"bad sessions", base + fp + "max_sessions_per_connection = 0\n", `"max_sessions_per_connection" (line 7): must be a positive integer`},
		{"bad insecure", base + "insecure_ignore_host_key = maybe\n", "insecure_ignore_host_key"},
		{"unknown type lists sftp", "[s]\ntype = scp\nhost = h\n", "ftp, local or sftp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConnections([]byte(tc.ini), "/", noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
