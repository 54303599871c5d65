package sftpremote

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeys decides which server keys an endpoint accepts. Without it an
// SSH client would trust whoever answers: the first thing an attacker on
// the path would be.
type HostKeys struct {
	// KnownHostsFile is an OpenSSH known_hosts file; a non-default port
	// matches "[host]:port" lines, as ssh(1) writes them.
	KnownHostsFile string
	// Fingerprints are SHA256 fingerprints as `ssh-keygen -l` prints them
	// ("SHA256:" and unpadded base64).
	Fingerprints []string
	// Insecure accepts any key. Only for test servers; callers log it.
	Insecure bool
}

// HostKeyError is a server key that matches none the endpoint knows.
type HostKeyError struct {
	Addr    string
	Offered []OfferedKey // every key the server showed, first the one it preferred
	Want    string       // what was expected, for the message
}

// OfferedKey is a key a server offered in a handshake: one that matched
// none known (HostKeyError), or the one its last connection was made with
// (Dialer.HostKey).
type OfferedKey struct {
	Type        string
	Fingerprint string // SHA256, as ssh-keygen -l prints it
}

func offeredKey(k ssh.PublicKey) OfferedKey {
	return OfferedKey{Type: k.Type(), Fingerprint: ssh.FingerprintSHA256(k)}
}

// String is the type and the fingerprint, "ssh-ed25519 SHA256:...".
func (k OfferedKey) String() string { return k.Type + " " + k.Fingerprint }

func (e *HostKeyError) Error() string {
	var offered []string
	for _, k := range e.Offered {
		offered = append(offered, k.String())
	}
	return fmt.Sprintf("host key of %s (%s) matches none of %s: if the server's key changed on purpose, update the endpoint's known_hosts_file or host_key_fingerprint (ssh-keyscan -p PORT HOST | ssh-keygen -lf - prints it)", e.Addr, strings.Join(offered, ", "), e.Want)
}

// verifier is a HostKeys made ready for one address.
type verifier struct {
	callback ssh.HostKeyCallback
	// algorithms are the key algorithms to ask the server for, in order:
	// those of the keys known for this address. A server with an ed25519
	// and an RSA key offers ed25519 first; if only its RSA key is known,
	// asking for RSA keeps a matching key from looking like a mismatch.
	algorithms []string
	// search: the known keys' types are not all known (fingerprints), so
	// a mismatch may only mean the server offered another of its keys.
	search bool
}

// forAddr builds the host key check for one server address (host:port).
func (h HostKeys) forAddr(addr string) (*verifier, error) {
	if h.Insecure {
		return &verifier{callback: ssh.InsecureIgnoreHostKey()}, nil
	}
	if h.KnownHostsFile == "" && len(h.Fingerprints) == 0 {
		return nil, errors.New("no host key to check the server against: set known_hosts_file or host_key_fingerprint")
	}
	var known ssh.HostKeyCallback
	var algorithms []string
	if h.KnownHostsFile != "" {
		cb, err := knownhosts.New(h.KnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("known_hosts_file: %w", err)
		}
		known = cb
		algorithms, err = knownAlgorithms(h.KnownHostsFile, addr)
		if err != nil {
			return nil, err
		}
	}
	fingerprints := slices.Clone(h.Fingerprints)
	want := describeWanted(h.KnownHostsFile, fingerprints)
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		offered := offeredKey(key)
		if slices.Contains(fingerprints, offered.Fingerprint) {
			return nil
		}
		if known != nil {
			err := known(knownhosts.Normalize(addr), remote, key)
			if err == nil {
				return nil
			}
			var ke *knownhosts.KeyError
			if !errors.As(err, &ke) {
				return err
			}
			if len(ke.Want) == 0 && len(fingerprints) == 0 {
				return &HostKeyError{Addr: addr, Offered: []OfferedKey{offered},
					Want: fmt.Sprintf("any key: %s has no line for %s", h.KnownHostsFile, knownhosts.Normalize(addr))}
			}
		}
		return &HostKeyError{Addr: addr, Offered: []OfferedKey{offered}, Want: want}
	}
	if len(fingerprints) > 0 {
		// A fingerprint does not say its key's type: let the server offer
		// any, and Dial asks for the others after a mismatch.
		return &verifier{callback: cb, search: true}, nil
	}
	return &verifier{callback: cb, algorithms: algorithms}, nil
}

func describeWanted(file string, fingerprints []string) string {
	var parts []string
	if len(fingerprints) > 0 {
		parts = append(parts, "host_key_fingerprint "+strings.Join(fingerprints, ", "))
	}
	if file != "" {
		parts = append(parts, "the keys for it in "+file)
	}
	return strings.Join(parts, " or ")
}

// knownAlgorithms lists the host key algorithms of the keys a known_hosts
// file holds for addr, so the handshake asks the server for a key type we
// can check. An empty list leaves the client's default order.
func knownAlgorithms(file, addr string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("known_hosts_file: %w", err)
	}
	host := knownhosts.Normalize(addr)
	var algos []string
	for len(data) > 0 {
		var marker string
		var hosts []string
		var key ssh.PublicKey
		marker, hosts, key, _, data, err = ssh.ParseKnownHosts(data)
		if err != nil {
			break // the rest holds no key line ParseKnownHosts can read
		}
		if marker == "revoked" || !matchesHost(hosts, host) {
			continue
		}
		for _, a := range algorithmsFor(key.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos, nil
}

// matchesHost reports whether a known_hosts line's host patterns name host
// in plain text. Hashed names (|1|...) are not matched here: with them the
// client keeps its default algorithm order, and the callback still decides.
func matchesHost(patterns []string, host string) bool {
	for _, p := range patterns {
		if p == host {
			return true
		}
	}
	return false
}

// algorithmsFor maps a key type to the signature algorithms that prove it:
// an RSA key signs as rsa-sha2-512/256 on any current server.
func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// Signer reads a private key (OpenSSH or PEM), decrypting it with
// passphrase when it is protected.
func Signer(keyPEM, passphrase []byte) (ssh.Signer, error) {
	if len(passphrase) > 0 {
		s, err := ssh.ParsePrivateKeyWithPassphrase(keyPEM, bytes.TrimRight(passphrase, "\r\n"))
		if err != nil {
			return nil, fmt.Errorf("private key: %w", err)
		}
		return s, nil
	}
	s, err := ssh.ParsePrivateKey(keyPEM)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, errors.New("private key is encrypted: set key_passphrase_file")
	}
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return s, nil
}
