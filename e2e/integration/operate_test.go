package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// pki is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, as PEM files.
type pki struct {
	dir                                              string
	ca, serverCert, serverKey, clientCert, clientKey string
	caCert                                           *x509.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.caCert, _ = x509.ParseCertificate(caDER)
	p.ca = p.write(t, "ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMutualTLSAndAdminToken: agents without a valid client certificate are
// refused; the admin API wants a bearer token except for health checks.
func TestMutualTLSAndAdminToken(t *testing.T) {
	p := newPKI(t)
	tokenFile := filepath.Join(p.dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{agents: 1, adminToken: "s3cret-token", config: func(c *config.Config) {
		c.Dispatcher.TLS = config.TLSFiles{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.ca}
		c.Dispatcher.Admin.TokenFile = tokenFile
		c.Agent.TLS = config.TLSFiles{CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey}
	}})
	writeFile(t, filepath.Join(s.ftpA.Root, "a.txt"), "over mTLS")
	s.submit(map[string]any{"task_id": "mtls-1", "src_id": "remote-ftp", "src_path": "/a.txt", "dst_id": "local", "dst_path": "a.txt"})
	if m := s.outcome("mtls-1"); m.Fields["status"] != "success" {
		t.Fatalf("over mTLS: %s", m.Value)
	}

	// An agent that trusts the dispatcher but has no certificate of its own.
	noCert := s.cfg
	noCert.Agent.TLS.CertFile, noCert.Agent.TLS.KeyFile = "", ""
	s.startAgentWith(2, s.writeConfig("no-cert", noCert))
	time.Sleep(time.Second)
	agents, err := s.admin.ListAgents(context.Background(), &adminv1.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(agents.Agents) != 1 {
		t.Fatalf("an agent without a client certificate was let in: %v", agents.Agents)
	}
	if logs := s.logs.tail(400); !strings.Contains(logs, "TLS handshake refused") || !strings.Contains(logs, "certificate") {
		t.Errorf("the dispatcher's log does not say why the agent was refused")
	}

	// The admin API: no token → Unauthenticated; wrong token → Unauthenticated;
	// health needs none (Kubernetes probes cannot send one).
	conn, err := grpc.NewClient(s.addrs.Admin.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bare := adminv1.NewAdminServiceClient(conn)
	if _, err := bare.GetStats(context.Background(), &adminv1.GetStatsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v", err)
	}
	wrong := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer nope")
	if _, err := bare.GetStats(wrong, &adminv1.GetStatsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("wrong token: %v", err)
	}
	if resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health check without a token: %v %v", resp, err)
	}

	// The lease port refuses a plaintext client.
	plain, err := grpc.NewClient(s.addrs.Lease.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(plain).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Error("a plaintext client reached the mTLS lease port")
	}
	// A TLS client with a certificate from another CA is refused too.
	stranger := newPKI(t)
	cert, _ := tls.LoadX509KeyPair(stranger.clientCert, stranger.clientKey)
	roots := x509.NewCertPool()
	roots.AddCert(p.caCert)
	bad, err := grpc.NewClient(s.addrs.Lease.String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := healthpb.NewHealthClient(bad).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Error("a client certificate from another CA was accepted")
	}
}

func TestEndpointsPauseAndWatch(t *testing.T) {
	s := newStack(t, stackOptions{})
	writeFile(t, filepath.Join(s.ftpA.Root, "w.txt"), "watched")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watch, err := s.admin.Watch(ctx, &adminv1.WatchRequest{TaskId: "watched-1"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the subscription is in place

	if _, err := s.admin.PauseEndpoint(ctx, &adminv1.PauseEndpointRequest{EndpointId: "remote-ftp"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.PauseEndpoint(ctx, &adminv1.PauseEndpointRequest{EndpointId: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("pausing an unknown endpoint: %v", err)
	}
	s.submit(map[string]any{"task_id": "watched-1", "src_id": "remote-ftp", "src_path": "/w.txt", "dst_id": "local", "dst_path": "w.txt"})
	ev, err := watch.Recv()
	if err != nil || ev.Event.Kind != adminv1.TaskEventKind_TASK_EVENT_KIND_QUEUED {
		t.Fatalf("first event: %v %v", ev, err)
	}
	time.Sleep(300 * time.Millisecond)
	eps, err := s.admin.ListEndpoints(ctx, &adminv1.ListEndpointsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var remote *adminv1.EndpointInfo
	for _, e := range eps.Endpoints {
		if e.EndpointId == "remote-ftp" {
			remote = e
		}
	}
	if remote == nil || !remote.Paused || remote.Queued != 1 || remote.Type != "ftp" || remote.Limit != 10 ||
		remote.Breaker != adminv1.BreakerState_BREAKER_STATE_CLOSED {
		t.Fatalf("remote-ftp while paused: %v", remote)
	}
	if _, err := s.admin.ResumeEndpoint(ctx, &adminv1.ResumeEndpointRequest{EndpointId: "remote-ftp"}); err != nil {
		t.Fatal(err)
	}
	var kinds []adminv1.TaskEventKind
	for {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatalf("after %v: %v", kinds, err)
		}
		kinds = append(kinds, ev.Event.Kind)
		if ev.Event.Kind == adminv1.TaskEventKind_TASK_EVENT_KIND_SUCCEEDED {
			if ev.Event.BytesDone != 7 || ev.Event.AgentId != "" && ev.Event.TaskId != "watched-1" {
				t.Errorf("succeeded event: %v", ev.Event)
			}
			break
		}
	}
	want := []adminv1.TaskEventKind{adminv1.TaskEventKind_TASK_EVENT_KIND_LEASED, adminv1.TaskEventKind_TASK_EVENT_KIND_COMMITTED, adminv1.TaskEventKind_TASK_EVENT_KIND_SUCCEEDED}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", kinds, want)
	}
	eps, _ = s.admin.ListEndpoints(ctx, &adminv1.ListEndpointsRequest{})
	for _, e := range eps.Endpoints {
		if e.EndpointId == "remote-ftp" && (e.Paused || e.Granted < 1 || len(e.Agents) == 0) {
			t.Errorf("remote-ftp after the transfer: %v", e)
		}
	}
}

// TestMetricsMove scrapes both processes' /metrics and checks that the
// counters a dashboard would show move with a transfer.
func TestMetricsMove(t *testing.T) {
	port := freePort(t)
	s := newStack(t, stackOptions{agents: 1, config: func(c *config.Config) { c.Agent.HTTPListen = fmt.Sprintf("127.0.0.1:%d", port) }})
	dispURL := "http://" + s.addrs.HTTP.String() + "/metrics"
	agentURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	before := scrape(t, dispURL)
	writeFile(t, filepath.Join(s.ftpA.Root, "m.txt"), "metric bytes")
	s.submit(map[string]any{"task_id": "metrics-1", "src_id": "remote-ftp", "src_path": "/m.txt", "dst_id": "local", "dst_path": "m.txt"})
	s.outcome("metrics-1")
	time.Sleep(200 * time.Millisecond)
	after := scrape(t, dispURL)
	agentM := scrape(t, agentURL)
	checks := []struct {
		name string
		got  float64
		want func(float64) bool
	}{
		{`ftp_pooler_outcomes_total{error_code="",status="success"}`, after[`ftp_pooler_outcomes_total{error_code="",status="success"}`] - before[`ftp_pooler_outcomes_total{error_code="",status="success"}`], func(v float64) bool { return v == 1 }},
		{"ftp_pooler_tasks_received_total", after["ftp_pooler_tasks_received_total"] - before["ftp_pooler_tasks_received_total"], func(v float64) bool { return v == 1 }},
		{"ftp_pooler_leases_granted_total", after["ftp_pooler_leases_granted_total"], func(v float64) bool { return v >= 1 }},
		{"ftp_pooler_agents_connected", after["ftp_pooler_agents_connected"], func(v float64) bool { return v == 1 }},
		{`ftp_pooler_publish_commits_total{result="committed"}`, after[`ftp_pooler_publish_commits_total{result="committed"}`], func(v float64) bool { return v >= 1 }},
		{`ftp_pooler_circuit_breaker_state{endpoint="remote-ftp"}`, after[`ftp_pooler_circuit_breaker_state{endpoint="remote-ftp"}`], func(v float64) bool { return v == 0 }},
		{`ftp_pooler_transfers_total{direction="download",error_code="",status="success"}`, agentM[`ftp_pooler_transfers_total{direction="download",error_code="",status="success"}`], func(v float64) bool { return v == 1 }},
		{`ftp_pooler_transfer_bytes_total{direction="download",dst="local",src="remote-ftp"}`, agentM[`ftp_pooler_transfer_bytes_total{direction="download",dst="local",src="remote-ftp"}`], func(v float64) bool { return v == 12 }},
		{`ftp_pooler_pool_connections{endpoint="remote-ftp",state="idle"}`, agentM[`ftp_pooler_pool_connections{endpoint="remote-ftp",state="idle"}`], func(v float64) bool { return v == 1 }},
		{`ftp_pooler_pool_dial_duration_seconds_count{endpoint="remote-ftp"}`, agentM[`ftp_pooler_pool_dial_duration_seconds_count{endpoint="remote-ftp"}`], func(v float64) bool { return v == 1 }},
		{"ftp_pooler_agent_sessions", agentM["ftp_pooler_agent_sessions"], func(v float64) bool { return v == 1 }},
	}
	for _, c := range checks {
		if !c.want(c.got) {
			t.Errorf("%s = %v", c.name, c.got)
		}
	}
	for _, url := range []string{"http://" + s.addrs.HTTP.String(), fmt.Sprintf("http://127.0.0.1:%d", port)} {
		for _, path := range []string{"/healthz", "/readyz", "/live", "/ready"} {
			resp, err := http.Get(url + path)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("%s%s: %v %v", url, path, resp, err)
			}
			if resp != nil {
				resp.Body.Close()
			}
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// scrape reads a Prometheus text page into name{labels} → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}
