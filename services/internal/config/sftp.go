package config

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// SFTPOptions are an SFTP endpoint's own keys.
type SFTPOptions struct {
	// PrivateKey is key_file's content (OpenSSH or PEM), empty for
	// password logins.
	PrivateKey Secret
	// KeyFile is where PrivateKey came from, for messages.
	KeyFile string
	// KeyPassphrase decrypts PrivateKey (key_passphrase_file).
	KeyPassphrase Secret
	// KnownHostsFile is an OpenSSH known_hosts file to check the server's
	// key against.
	KnownHostsFile string
	// HostKeyFingerprints are SHA256 fingerprints (host_key_fingerprint,
	// comma-separated), as `ssh-keygen -l` prints them.
	HostKeyFingerprints []string
	// InsecureIgnoreHostKey accepts any server key (test servers only).
	InsecureIgnoreHostKey bool
	// MaxSessionsPerConnection is how many SFTP sessions (SSH channels)
	// one SSH connection carries at once.
	MaxSessionsPerConnection int
}

// DefaultSFTPSessionsPerConnection stays under OpenSSH's MaxSessions (10).
const DefaultSFTPSessionsPerConnection = 8

var sftpKeys = []string{"key_file", "key_passphrase_file", "known_hosts_file", "host_key_fingerprint",
	"insecure_ignore_host_key", "max_sessions_per_connection"}

// fingerprintPattern is what ssh-keygen -l prints: SHA256 in unpadded
// base64, 43 characters.
var fingerprintPattern = regexp.MustCompile(`^SHA256:[A-Za-z0-9+/]{43}$`)

// howToGetFingerprint ends the messages about host keys.
const howToGetFingerprint = "ssh-keyscan -p PORT HOST | ssh-keygen -lf - prints the server's fingerprints (check them with the server's administrator)"

func parseSFTP(s *endpointSection, ep *Endpoint) error {
	if err := parseServer(s, ep, 22); err != nil {
		return err
	}
	if _, ok := s.keys["user"]; !ok {
		return s.missing("user", "for an sftp endpoint")
	}
	if err := parseSFTPAuth(s, ep); err != nil {
		return err
	}
	if err := parseSFTPHostKeys(s, ep); err != nil {
		return err
	}
	ep.SFTP.MaxSessionsPerConnection = DefaultSFTPSessionsPerConnection
	if v, ok := s.keys["max_sessions_per_connection"]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v.value))
		if err != nil || n < 1 {
			return s.bad("max_sessions_per_connection", "must be a positive integer, got %q", v.value)
		}
		ep.SFTP.MaxSessionsPerConnection = n
	}
	return nil
}

// parseSFTPAuth reads the private key; a password (parseServer's) and a
// key may both be set, and at least one must be.
func parseSFTPAuth(s *endpointSection, ep *Endpoint) error {
	hasPassword := false
	for _, k := range []string{"pass", "password", "pass_file", "pass_env"} {
		if _, ok := s.keys[k]; ok {
			hasPassword = true
		}
	}
	if !hasPassword {
		ep.Password = ""
	}
	v, ok := s.keys["key_file"]
	if !ok {
		if !hasPassword {
			return fmt.Errorf("[%s]: an sftp endpoint needs a password (pass, pass_file or pass_env) or a private key (key_file)", s.id)
		}
		if _, ok := s.keys["key_passphrase_file"]; ok {
			return s.bad("key_passphrase_file", "is set but key_file is not")
		}
		return nil
	}
	ep.SFTP.KeyFile = resolveRelative(s.dir, strings.TrimSpace(v.value))
	key, err := os.ReadFile(ep.SFTP.KeyFile)
	if err != nil {
		return s.bad("key_file", "%v", err)
	}
	ep.SFTP.PrivateKey = Secret(key)
	if v, ok := s.keys["key_passphrase_file"]; ok {
		pp, err := os.ReadFile(resolveRelative(s.dir, strings.TrimSpace(v.value)))
		if err != nil {
			return s.bad("key_passphrase_file", "%v", err)
		}
		ep.SFTP.KeyPassphrase = Secret(strings.TrimRight(string(pp), "\r\n"))
	}
	return nil
}

// parseSFTPHostKeys: the server's key is checked unless the section says
// explicitly not to; an endpoint that names no key does not start.
func parseSFTPHostKeys(s *endpointSection, ep *Endpoint) error {
	if err := s.boolKey("insecure_ignore_host_key", &ep.SFTP.InsecureIgnoreHostKey); err != nil {
		return err
	}
	if v, ok := s.keys["known_hosts_file"]; ok {
		ep.SFTP.KnownHostsFile = resolveRelative(s.dir, strings.TrimSpace(v.value))
		if _, err := os.Stat(ep.SFTP.KnownHostsFile); err != nil {
			return s.bad("known_hosts_file", "%v", err)
		}
	}
	if v, ok := s.keys["host_key_fingerprint"]; ok {
		for _, f := range strings.Split(v.value, ",") {
			f = strings.TrimSpace(f)
			if !fingerprintPattern.MatchString(f) {
				return s.bad("host_key_fingerprint", "%q is not a SHA256 fingerprint (want SHA256: and 43 base64 characters); %s", f, howToGetFingerprint)
			}
			ep.SFTP.HostKeyFingerprints = append(ep.SFTP.HostKeyFingerprints, f)
		}
	}
	if ep.SFTP.KnownHostsFile == "" && len(ep.SFTP.HostKeyFingerprints) == 0 && !ep.SFTP.InsecureIgnoreHostKey {
		return fmt.Errorf("[%s]: an sftp endpoint needs the server's host key: set known_hosts_file (an OpenSSH known_hosts file; non-default ports as [host]:port) or host_key_fingerprint; %s", s.id, howToGetFingerprint)
	}
	return nil
}
