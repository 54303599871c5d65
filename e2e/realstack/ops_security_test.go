//go:build e2e

package realstack

// Secure transport end to end: mutual TLS on the lease stream (certificates
// made here with crypto/x509), and Kafka over SASL/PLAIN through the
// kafka.client pass-through (the SASL_PLAINTEXT listener of
// scripts/e2e/kafka.sh).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	File string // its certificate, PEM
}

var certSerial int64

func newTestCA(t testing.TB, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	certSerial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(certSerial),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"ftp-pooler e2e"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	ca := &testCA{cert: cert, key: key, File: filepath.Join(dir, name+".crt")}
	writePEM(t, ca.File, "CERTIFICATE", der)
	return ca
}

// issue writes <dir>/<name>.crt and .key, a certificate the CA signed for
// a server (IP SAN 127.0.0.1) or a client.
func (ca *testCA) issue(t testing.TB, dir, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	certSerial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(certSerial),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"ftp-pooler e2e"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	must(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

// configWith is the stack's config.yaml with agent.tls replaced, written
// to <dir>/<name>.yaml.
func (s *Stack) configWith(name string, agentTLS config.TLSFiles) string {
	s.T.Helper()
	c := s.Config
	c.Agent.TLS = agentTLS
	path, err := s.WriteConfig(name, c)
	must(s.T, err)
	return path
}

// TestOpsMutualTLS runs a dispatcher whose lease stream requires client
// certificates signed by its CA. An agent with such a certificate works;
// agents without a certificate, with one from another CA, or without TLS
// at all are refused: the dispatcher logs each refused handshake with the
// reason, the agents log the TLS error, never become ready and never get a
// lease, and every task runs on the good agent.
func TestOpsMutualTLS(t *testing.T) {
	certs := t.TempDir()
	ca := newTestCA(t, certs, "lease-ca")
	other := newTestCA(t, certs, "other-ca")
	srvCert, srvKey := ca.issue(t, certs, "dispatcher", true)
	goodCert, goodKey := ca.issue(t, certs, "agent-good", false)
	foreignCert, foreignKey := other.issue(t, certs, "agent-foreign", false)

	s := PrepareStack(t, StackOptions{Agents: 1, Config: func(c *config.Config) {
		c.Dispatcher.TLS = config.TLSFiles{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: ca.File}
		c.Agent.TLS = config.TLSFiles{CAFile: ca.File, CertFile: goodCert, KeyFile: goodKey}
	}})
	s.StartDispatcher()
	s.StartAgent(0)
	s.WaitReady(1, 60*time.Second)

	// The refused: each its own config, otherwise like the good agent.
	bad := []struct {
		name, why string
		tls       config.TLSFiles // none: no TLS at all
		serverLog *regexp.Regexp  // the dispatcher's reason
	}{
		{"nocert", "no client certificate", config.TLSFiles{CAFile: ca.File},
			regexp.MustCompile(`TLS handshake refused.*client didn't provide a certificate`)},
		{"foreign", "a certificate of another CA", config.TLSFiles{CAFile: ca.File, CertFile: foreignCert, KeyFile: foreignKey},
			regexp.MustCompile(`TLS handshake refused.*certificate signed by unknown authority`)},
		{"plaintext", "no TLS", config.TLSFiles{},
			regexp.MustCompile(`TLS handshake refused.*(first record does not look like a TLS handshake|EOF)`)},
	}
	var procs []*Proc
	for _, b := range bad {
		files := stack.Files{Config: s.configWith("agent-"+b.name, b.tls), Connections: s.Files.Connections}
		a := stack.NewAgent("agent-"+b.name, filepath.Join(env.BinDir, "agent"), filepath.Join(s.Dir, "agent-"+b.name+".log"), s.Name+"-"+b.name, files)
		a.Dispatchers, a.Slots, a.HTTPListen = []string{s.Dispatcher.Lease}, 8, "127.0.0.1:0"
		must(t, a.Start(30*time.Second))
		p := a.Proc
		procs = append(procs, p)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("----- %s, last 30 lines -----\n%s", p.Name, p.Tail(30))
			}
			if err := p.Stop(30 * time.Second); err != nil {
				t.Errorf("%s: SIGTERM: %v", p.Name, err)
			}
		})
	}
	for i, b := range bad {
		p := procs[i]
		httpAddr, err := p.WaitLogValue("http_address", 30*time.Second)
		if err != nil {
			t.Fatalf("%s: %v\n%s", p.Name, err, p.Tail(30))
		}
		// The dispatcher says who was refused and why.
		line, err := s.Dispatcher.WaitLog(b.serverLog, 30*time.Second)
		if err != nil {
			t.Errorf("agent with %s: the dispatcher did not log the refusal: %v", b.why, err)
		} else {
			t.Logf("agent with %s, dispatcher: %s", b.why, line)
		}
		// The agent says its stream failed, with the TLS reason.
		line, err = p.WaitLog(regexp.MustCompile(`(?i)dispatcher stream ended.*(tls|certificate|connection reset|EOF|closed)`), 30*time.Second)
		if err != nil {
			t.Errorf("agent with %s: no stream error in its log: %v\n%s", b.why, err, p.Tail(10))
		} else {
			t.Logf("agent with %s, agent: %s", b.why, line)
		}
		if code, _ := stack.HTTPStatus("http://" + httpAddr + "/readyz"); code == http.StatusOK {
			t.Errorf("agent with %s is ready", b.why)
		}
	}
	// Repeated refusals (the agents keep retrying) leave the good agent
	// alone and add no one to ListAgents.
	time.Sleep(2 * time.Second)
	s.WaitReady(1, 10*time.Second)
	refused := s.Dispatcher.CountLog(regexp.MustCompile(`TLS handshake refused`))
	if refused < len(bad) {
		t.Errorf("dispatcher logged %d refused handshakes, want at least %d", refused, len(bad))
	}

	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir))
	content := []byte("over mutual TLS\n")
	PutFile(t, env.VSFTPD.Path(dir+"/m.txt"), content)
	var tasks []Task
	for i := 0; i < 6; i++ {
		tasks = append(tasks, Task{TaskID: s.ID(fmt.Sprintf("mtls-%d", i)), SrcID: "vsftpd", SrcPath: dir + "/m.txt", DstID: "local", DstPath: fmt.Sprintf("mtls/%d.txt", i)})
	}
	got := s.Run(t, 60*time.Second, tasks...)
	for _, tk := range tasks {
		s.CheckSuccess(t, got[tk.TaskID], tk, int64(len(content)))
	}
	for _, p := range procs {
		if n := p.CountLog(regexp.MustCompile(`msg="(connected to dispatcher|transfer [a-z]+)"`)); n > 0 {
			t.Errorf("%s, refused, logged %d connections or transfers:\n%s", p.Name, n, p.Tail(20))
		}
	}
	t.Logf("dispatcher refused %d handshakes", s.Dispatcher.CountLog(regexp.MustCompile(`TLS handshake refused`)))
}

// kafkaSASL is the broker's SASL_PLAINTEXT listener from <state>/env, or a
// skip when the broker was started by an older kafka.sh without it.
func kafkaSASL(t testing.TB) (brokers, mechanism, user, pass string) {
	t.Helper()
	kv, err := stack.ReadEnvFile(env.Path())
	must(t, err)
	brokers, mechanism, user, pass = kv["KAFKA_SASL_BROKERS"], kv["KAFKA_SASL_MECHANISM"], kv["KAFKA_SASL_USER"], kv["KAFKA_SASL_PASS"]
	if brokers == "" {
		t.Skipf("the broker has no SASL listener (no KAFKA_SASL_BROKERS in %s/env): restart it with scripts/e2e/kafka.sh stop && start", env.StateDir)
	}
	return
}

// kafkaPeers are the Kafka ports a process has connections to (ss -tnp).
func kafkaPeers(t testing.TB, pid int, ports ...string) map[string]int {
	t.Helper()
	out, err := exec.Command("ss", "-Htnp", "state", "established").Output()
	must(t, err)
	got := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, "pid="+strconv.Itoa(pid)+",") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		_, port, _ := net.SplitHostPort(f[3]) // Recv-Q Send-Q Local Peer
		for _, p := range ports {
			if port == p {
				got[p]++
			}
		}
	}
	return got
}

// TestOpsKafkaSASL runs a dispatcher that reaches Kafka only through the
// SASL_PLAINTEXT listener, configured with the kafka.client pass-through
// (security.protocol, sasl.mechanism, sasl.username, sasl.password): tasks
// succeed (consumer group, transactional producer and all). A dispatcher
// with a wrong password logs librdkafka's authentication error, never
// becomes ready and still stops cleanly.
func TestOpsKafkaSASL(t *testing.T) {
	brokers, mech, user, pass := kafkaSASL(t)
	_, plainPort, _ := net.SplitHostPort(env.Kafka)
	_, saslPort, _ := net.SplitHostPort(brokers)
	sasl := func(password string) func(*config.Config) {
		return func(c *config.Config) {
			c.Kafka.BootstrapServers = []string{brokers}
			c.Kafka.Client = map[string]string{
				"security.protocol": "SASL_PLAINTEXT",
				"sasl.mechanism":    mech,
				"sasl.username":     user,
				"sasl.password":     password,
			}
		}
	}
	t.Run("good", func(t *testing.T) {
		s := NewStack(t, StackOptions{Agents: 1, Config: sasl(pass)})
		dir := s.FTPDir()
		RemoveOnSuccess(t, env.VSFTPD.Path(dir))
		content := []byte("tasks through SASL\n")
		PutFile(t, env.VSFTPD.Path(dir+"/s.txt"), content)
		var tasks []Task
		for i := 0; i < 5; i++ {
			tasks = append(tasks, Task{TaskID: s.ID(fmt.Sprintf("sasl-%d", i)), SrcID: "vsftpd", SrcPath: dir + "/s.txt", DstID: "local", DstPath: fmt.Sprintf("sasl/%d.txt", i)})
		}
		got := s.Run(t, 60*time.Second, tasks...)
		for _, tk := range tasks {
			s.CheckSuccess(t, got[tk.TaskID], tk, int64(len(content)))
		}
		// Every connection the dispatcher holds to the broker is SASL's.
		peers := kafkaPeers(t, s.Dispatcher.Pid(), saslPort, plainPort)
		if peers[saslPort] == 0 || peers[plainPort] != 0 {
			t.Errorf("dispatcher's connections to Kafka: %d to SASL_PLAINTEXT :%s, %d to PLAINTEXT :%s; want only SASL",
				peers[saslPort], saslPort, peers[plainPort], plainPort)
		}
	})
	t.Run("wrong-password", func(t *testing.T) {
		s := PrepareStack(t, StackOptions{Agents: -1, Config: sasl("not-" + pass)})
		s.StartDispatcher()
		line, err := s.Dispatcher.WaitLog(regexp.MustCompile(`SASL authentication error: Authentication failed: Invalid username or password`), 60*time.Second)
		if err != nil {
			t.Fatalf("no authentication error in the dispatcher's log: %v\n%s", err, s.Dispatcher.Tail(30))
		}
		t.Logf("dispatcher: %s", line)
		if !regexp.MustCompile(`level=(ERROR|WARN)`).MatchString(line) {
			t.Errorf("the authentication failure is not logged as an error or warning: %s", line)
		}
		time.Sleep(3 * time.Second)
		if code, err := stack.HTTPStatus("http://" + s.Dispatcher.HTTP + "/readyz"); code == http.StatusOK {
			t.Errorf("a dispatcher that cannot log in to Kafka is ready (%d %v)", code, err)
		}
		if !s.Dispatcher.Running() {
			t.Fatalf("the dispatcher exited: %v\n%s", s.Dispatcher.Wait(0), s.Dispatcher.Tail(20))
		}
		// The publisher's InitTransactions used to block in librdkafka for
		// its whole 60 s while the broker refused the login, and shutdown
		// waited for it: SIGTERM took a minute and exited 1.
		start := time.Now()
		err = s.Dispatcher.Stop(90 * time.Second)
		if took := time.Since(start); err != nil || took > 30*time.Second {
			t.Errorf("SIGTERM with Kafka refusing the login: exit after %s (%v), want 0 within 30 s\n%s",
				took.Round(time.Second), err, s.Dispatcher.Tail(5))
		}
	})
}

// TestOpsAdminTLS serves the admin API over mutual TLS
// (dispatcher.admin.tls) and drives it with grpcurl: -plaintext and a
// client without a certificate are refused (and logged), while
// -cacert/-cert/-key with a certificate of the admin CA work.
func TestOpsAdminTLS(t *testing.T) {
	grpcurlPath(t)
	certs := t.TempDir()
	ca := newTestCA(t, certs, "admin-ca")
	srvCert, srvKey := ca.issue(t, certs, "dispatcher-admin", true)
	opCert, opKey := ca.issue(t, certs, "operator", false)
	s := PrepareStack(t, StackOptions{Agents: -1, Config: func(c *config.Config) {
		c.Dispatcher.Admin.TLS = config.TLSFiles{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: ca.File}
	}})
	s.StartDispatcher()
	deadline := time.Now().Add(60 * time.Second)
	for code := 0; code != http.StatusOK; {
		code, _ = stack.HTTPStatus("http://" + s.Dispatcher.HTTP + "/readyz")
		if time.Now().After(deadline) {
			t.Fatalf("dispatcher not ready (/readyz %d)\n%s", code, s.Dispatcher.Tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	addr := s.Dispatcher.Admin
	// Plaintext and TLS without a client certificate: refused.
	for _, c := range []struct {
		why  string
		args []string
		log  *regexp.Regexp
	}{
		{"-plaintext", []string{"-plaintext", "-connect-timeout", "3", addr, "list"}, regexp.MustCompile(`TLS handshake refused.*first record does not look like a TLS handshake`)},
		{"no client certificate", []string{"-cacert", ca.File, "-connect-timeout", "3", addr, "list"}, regexp.MustCompile(`TLS handshake refused.*client didn't provide a certificate`)},
	} {
		r := Grpcurl(t, c.args...)
		if r.Exit == 0 {
			t.Errorf("%s: admin API answered:\n%s", c.why, r)
		}
		t.Logf("%s: grpcurl exit %d: %s", c.why, r.Exit, strings.TrimSpace(r.Stderr))
		if _, err := s.Dispatcher.WaitLog(c.log, 10*time.Second); err != nil {
			t.Errorf("%s: the dispatcher did not log the refused handshake: %v", c.why, err)
		}
	}
	// With the operator's certificate: works.
	tlsArgs := []string{"-cacert", ca.File, "-cert", opCert, "-key", opKey}
	r := Grpcurl(t, append(tlsArgs, addr, "list")...)
	if r.Exit != 0 || !strings.Contains(r.Stdout, adminService) {
		t.Errorf("list over mutual TLS:\n%s", r)
	}
	var st jStats
	Grpcurl(t, append(tlsArgs, addr, adminService+"/GetStats")...).ok(t, &st)
	if len(st.Partitions) != 6 || st.Agents != 0 {
		t.Errorf("GetStats over mutual TLS: %+v", st)
	}
	var health struct{ Status string }
	Grpcurl(t, append(tlsArgs, addr, "grpc.health.v1.Health/Check")...).ok(t, &health)
	if health.Status != "SERVING" {
		t.Errorf("health over mutual TLS: %q", health.Status)
	}
}
