//go:build e2e

package realstack

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestSFTPHostKeyInListEndpoints moves a file to each SFTP server and
// checks that ListEndpoints shows the host key each server offered the
// agents, computed here from the known_hosts file the endpoints trust:
// OpenSSH's ed25519 key (its first line there, so the agents ask for that
// type first) and ProFTPD's RSA key. FTP and local endpoints show none, and
// no SFTP endpoint shows one before an agent connected to it.
func TestSFTPHostKeyInListEndpoints(t *testing.T) {
	openssh, proftpd := sftpServers(t)
	s := NewStack(t, StackOptions{Endpoints: sftpEndpoints(openssh, proftpd)})
	dir := s.FTPDir()
	up := "/upload" + dir // OpenSSH's chroot is root's; its users write under /upload
	keyDir := "/upload/key-" + s.Suffix + "-" + s.Name
	RemoveOnSuccess(t, openssh.Path(up), openssh.Path(keyDir), proftpd.Path(dir))

	want := map[string]string{
		"openssh":     knownHostKey(t, openssh.KnownHosts, openssh.Addr),
		"openssh-key": knownHostKey(t, openssh.KnownHosts, openssh.Addr),
		"proftpd":     knownHostKey(t, proftpd.KnownHosts, proftpd.Addr),
	}
	for id := range want {
		if k := endpointInfo(t, s, id).HostKeys; len(k) > 0 {
			t.Errorf("%s shows host keys %q before any connection, want none", id, k)
		}
	}

	sum := PutRandomFile(t, filepath.Join(s.Base, "out/f.bin"), 1<<20, 31)
	tasks := []Task{
		{TaskID: s.ID("openssh"), SrcID: "local", SrcPath: "out/f.bin", DstID: "openssh", DstPath: up + "/f.bin"},
		{TaskID: s.ID("openssh-key"), SrcID: "local", SrcPath: "out/f.bin", DstID: "openssh-key", DstPath: keyDir + "/f.bin"},
		{TaskID: s.ID("proftpd"), SrcID: "local", SrcPath: "out/f.bin", DstID: "proftpd", DstPath: dir + "/f.bin"},
	}
	got := s.Run(t, 2*time.Minute, tasks...)
	for _, tk := range tasks {
		s.CheckSuccess(t, got[tk.TaskID], tk, 1<<20)
	}
	CheckFile(t, openssh.Path(up+"/f.bin"), sum, 1<<20)
	CheckFile(t, proftpd.Path(dir+"/f.bin"), sum, 1<<20)

	// Pool reports ride on the agents' heartbeats.
	for id, key := range want {
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			k := endpointInfo(t, s, id).HostKeys
			if slices.Equal(k, []string{key}) {
				t.Logf("%s: host_keys %q", id, k)
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("ListEndpoints shows %s's host keys as %q, want [%q] (from known_hosts)", id, k, key)
				break
			}
		}
	}
	for _, id := range []string{"vsftpd", "local"} {
		if k := endpointInfo(t, s, id).HostKeys; len(k) > 0 {
			t.Errorf("ListEndpoints shows host keys %q for %s, want none", k, id)
		}
	}
}

// knownHostKey is the first key a known_hosts file holds for addr, as
// ListEndpoints shows host keys: its type and SHA256 fingerprint, as
// ssh-keygen -l prints it. The agent asks for the key types of the file's
// lines in their order, and the server offers the first it has.
func knownHostKey(t *testing.T, file, addr string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	must(t, err)
	host := knownhosts.Normalize(addr)
	for len(data) > 0 {
		marker, hosts, key, _, rest, err := ssh.ParseKnownHosts(data)
		if err != nil {
			break
		}
		data = rest
		if marker == "" && slices.Contains(hosts, host) {
			return key.Type() + " " + ssh.FingerprintSHA256(key)
		}
	}
	t.Fatalf("%s holds no key for %s", file, host)
	return ""
}
