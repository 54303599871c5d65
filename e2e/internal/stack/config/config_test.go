package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ftp-pooler/ftp-pooler/services/agent"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher"
)

func noEnv(string) string { return "" }

// files writes config.yaml as given and a one-endpoint connections.ini.
func files(t *testing.T, yml []byte) dispatcher.Options {
	t.Helper()
	dir := t.TempDir()
	o := dispatcher.Options{ConfigPath: filepath.Join(dir, "config.yaml"), ConnectionsPath: filepath.Join(dir, "connections.ini")}
	if err := os.WriteFile(o.ConfigPath, yml, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := (Connections{Local("local", dir)}).Write(o.ConnectionsPath, "test"); err != nil {
		t.Fatal(err)
	}
	return o
}

func mustMarshal(t *testing.T, c Config, all bool) []byte {
	t.Helper()
	b, err := marshal(c, all)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDefaultIsTheServices: every key written with Default's value loads
// to what the services use when the file leaves the key out.
func TestDefaultIsTheServices(t *testing.T) {
	c := Default()
	c.Kafka.BootstrapServers = []string{"127.0.0.1:9092"}
	full := files(t, mustMarshal(t, c, true))
	bare := files(t, []byte("kafka:\n  bootstrap_servers: [127.0.0.1:9092]\n"))

	got, _, err := dispatcher.Load(full, noEnv)
	if err != nil {
		t.Fatalf("every key at Default's value: %v", err)
	}
	want, _, err := dispatcher.Load(bare, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	got.Path, want.Path = "", ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Default differs from the services' defaults: %v", diffConfigs(t, got, want))
	}

	agentOpts := func(o dispatcher.Options) agent.Options {
		return agent.Options{ConfigPath: o.ConfigPath, ConnectionsPath: o.ConnectionsPath, Dispatchers: []string{"127.0.0.1:7070"}}
	}
	gotA, _, err := agent.Load(agentOpts(full), noEnv)
	if err != nil {
		t.Fatalf("agent: every key at Default's value: %v", err)
	}
	wantA, _, err := agent.Load(agentOpts(bare), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	gotA.Path, wantA.Path = "", ""
	if !reflect.DeepEqual(gotA, wantA) {
		t.Errorf("agent: Default differs from the services' defaults: %v", diffConfigs(t, gotA, wantA))
	}
}

// diffConfigs names the keys where two loaded configurations differ.
func diffConfigs(t *testing.T, mirror, services any) []string {
	t.Helper()
	tree := func(v any) map[string]any {
		b, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	return diffTrees("", tree(mirror), tree(services))
}

// changed has a value other than Default's in every key the dispatcher's
// validation lets differ.
func changed() Config {
	tls := TLSFiles{CertFile: "/c.pem", KeyFile: "/k.pem", ClientCAFile: "/ca.pem", ServerName: "srv"}
	return Config{
		Kafka: Kafka{
			BootstrapServers: []string{"k1:9092", "k2:9092"}, ConsumerGroup: "g", InputTopic: "in", ResultTopic: "res",
			FailTopic: "fail", DLQTopic: "dlq", MaxRetries: 7, BaseBackoffMS: 11, MaxBackoffMS: 12, Delivery: "at_least_once",
			TransactionalID: "tx", CommitInterval: 7 * time.Millisecond, BatchMaxOutcomes: 13, MaxBufferedTasks: 14,
			CommittedOffsetsTimeout: 15 * time.Millisecond, Client: map[string]string{"linger.ms": "5"},
		},
		Pool: Pool{MaxSessionsPerPod: 21, MaxSessionsPerConnection: 22, SessionTimeoutSeconds: 23, PrewarmEnabled: true,
			PrewarmSessionsPerConnection: 24, CheckIdleAfter: 25 * time.Second, LimitRecoveryInterval: 26 * time.Second},
		Transfer: Transfer{TransferTimeoutSeconds: 31, ConnectTimeoutSeconds: 32, IdleTimeout: 33 * time.Second,
			MinRateBytesPerSecond: 34, BufferSize: 8192, Fsync: false},
		Retry:          Retry{MaxAttempts: 41, BaseBackoff: 42 * time.Millisecond, MaxBackoff: 43 * time.Second, MaxOutage: 0},
		Lease:          Lease{TTL: 51 * time.Second, HeartbeatInterval: 5 * time.Second, CommitTimeout: 53 * time.Second, LeasesPerConnection: 4, ConnectionWait: 55 * time.Millisecond},
		CircuitBreaker: CircuitBreaker{FailureThreshold: 61, SuccessThreshold: 62, TimeoutSeconds: 63, HalfOpenMaxCalls: 64},
		API:            API{Host: "127.0.0.2", Port: 8081},
		Metrics:        Metrics{Port: 9091, Pprof: true},
		Logging:        Logging{Level: "WARNING", Format: "text"},
		Dispatcher: Dispatcher{Listen: "127.0.0.1:1", AdminListen: "127.0.0.1:2", HTTPListen: "127.0.0.1:3", InstanceID: "d",
			DrainTimeout: 71 * time.Second, TLS: tls,
			Shutdown: Shutdown{FinalFlushTimeout: 72 * time.Second, ProducerFlushTimeout: 73 * time.Millisecond,
				LeaseServerStopTimeout: 74 * time.Second, AdminServerStopTimeout: 75 * time.Second}, Admin: Admin{TokenFile: "/token", TLS: tls}},
		Agent: Agent{Dispatchers: []string{"d1:7070", "d2:7070"}, Slots: 81, HTTPListen: "127.0.0.1:4", AgentID: "a",
			DrainTimeout: 82 * time.Second, ReconnectMaxBackoff: 83 * time.Second,
			TLS: TLSFiles{CertFile: "/ac.pem", KeyFile: "/ak.pem", CAFile: "/aca.pem", ClientCAFile: "/acc.pem", ServerName: "asrv"}},
		Telemetry: Telemetry{FlushTimeout: 91 * time.Second},
	}
}

// TestEveryKeyReachesTheServices writes every key of the mirror, loads the
// file with the dispatcher's loader (which refuses unknown keys) and
// checks that each value arrived, and that the services have no key the
// mirror lacks.
func TestEveryKeyReachesTheServices(t *testing.T) {
	c := changed()
	loaded, _, err := dispatcher.Load(files(t, mustMarshal(t, c, true)), noEnv)
	if err != nil {
		t.Fatalf("the services refuse the mirror's keys: %v", err)
	}
	back, err := yaml.Marshal(loaded)
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	if err := yaml.Unmarshal(back, &got); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(mustMarshal(t, c, true), &want); err != nil {
		t.Fatal(err)
	}
	for _, d := range diffTrees("", want, got) {
		t.Error(d)
	}
}

// diffTrees lists the keys whose values differ between two decoded
// files, the mirror's value first.
func diffTrees(prefix string, want, got map[string]any) []string {
	var out []string
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	for k := range keys {
		w, inWant := want[k]
		g, inGot := got[k]
		switch {
		case !inWant:
			out = append(out, "the services have "+prefix+k+", the mirror does not: add it to Config")
		case !inGot:
			out = append(out, "the mirror has "+prefix+k+", the services do not")
		default:
			wm, wok := w.(map[string]any)
			gm, gok := g.(map[string]any)
			if wok && gok {
				out = append(out, diffTrees(prefix+k+".", wm, gm)...)
			} else if !reflect.DeepEqual(w, g) {
				out = append(out, prefix+k+": "+yamlText(w)+" against "+yamlText(g))
			}
		}
	}
	slices.Sort(out)
	return out
}

func yamlText(v any) string {
	b, _ := yaml.Marshal(v)
	return strings.TrimSpace(string(b))
}

func TestYAMLWritesOnlyWhatDiffers(t *testing.T) {
	if b := string(mustMarshal(t, Default(), false)); b != "{}\n" {
		t.Errorf("Default as YAML = %q, want an empty mapping", b)
	}
	c := Default()
	c.Transfer.Fsync = false
	c.Lease.TTL = 3 * time.Second
	c.Kafka.BootstrapServers = []string{"a:1"}
	want := "kafka:\n  bootstrap_servers:\n    - a:1\ntransfer:\n  fsync: false\nlease:\n  ttl: 3s\n"
	if b, err := c.YAML(); err != nil || string(b) != want {
		t.Errorf("YAML = %q (%v), want %q", b, err, want)
	}
}

func TestSet(t *testing.T) {
	c := Default()
	for _, kv := range [][2]string{
		{"lease.leases_per_connection", "4"},
		{"lease.ttl", "250ms"},
		{"transfer.fsync", "false"},
		{"dispatcher.admin.token_file", "/t"},
		{"kafka.client.linger.ms", "5"},
		{"kafka.bootstrap_servers", "a:1, b:2"},
		{"logging.level", "DEBUG"},
	} {
		if err := c.Set(kv[0], kv[1]); err != nil {
			t.Errorf("Set(%s, %s): %v", kv[0], kv[1], err)
		}
	}
	want := Default()
	want.Lease.LeasesPerConnection = 4
	want.Lease.TTL = 250 * time.Millisecond
	want.Transfer.Fsync = false
	want.Dispatcher.Admin.TokenFile = "/t"
	want.Kafka.Client = map[string]string{"linger.ms": "5"}
	want.Kafka.BootstrapServers = []string{"a:1", "b:2"}
	want.Logging.Level = "DEBUG"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("after Set:\n got  %+v\n want %+v", c, want)
	}
	if err := c.Set("kafka.client", `{"acks": "all"}`); err != nil || !reflect.DeepEqual(c.Kafka.Client, map[string]string{"acks": "all"}) {
		t.Errorf("Set(kafka.client, a mapping) = %v: %v", err, c.Kafka.Client)
	}
	for _, bad := range [][2]string{
		{"lease.leases_per_conection", "4"}, // misspelt
		{"lease", "4"},                      // a section
		{"lease.ttl.x", "1s"},               // below a key
		{"lease.ttl", "3"},                  // no unit
		{"pool.max_sessions_per_pod", "many"},
	} {
		if err := c.Set(bad[0], bad[1]); err == nil {
			t.Errorf("Set(%s, %s) succeeded", bad[0], bad[1])
		}
	}
}

// TestConnectionsReachTheServices writes every key an endpoint can have
// and checks what the services' parser made of each, and that it warned
// of no unknown key (it ignores those).
func TestConnectionsReachTheServices(t *testing.T) {
	dir := t.TempDir()
	passFile := filepath.Join(dir, "pass")
	if err := os.WriteFile(passFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := FTP("ftp-a", "ftp.example", 2121, "alice", "pa;ss #%word")
	a.TrustPASVAddress, a.DisableEPSV, a.Encoding, a.Timeout = true, true, "latin-1", 2500*time.Millisecond
	a.TLS, a.TLSServerName, a.TLSCAFile, a.TLSInsecureSkipVerify, a.TLSMaxVersion = "explicit", "srv", "/ca.pem", true, "1.3"
	a.MaxConnections = 4
	b := Endpoint{ID: "ftp-b", Type: "ftp", Host: "b.example", User: "bob", PassFile: passFile, Active: true}
	c := Endpoint{ID: "ftp-c", Type: "ftp", Host: "c.example", PassEnv: "E2E_TEST_PASS"}
	anon := Endpoint{ID: "anon", Type: "ftp", Host: "127.0.0.1", Port: 2100}
	conns := Connections{a, b, c, anon, Local("local", dir)}

	cfg := Default()
	cfg.Kafka.BootstrapServers = []string{"127.0.0.1:9092"}
	o := files(t, mustMarshal(t, cfg, false))
	if err := conns.Write(o.ConnectionsPath, "test"); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == "E2E_TEST_PASS" {
			return "from-env"
		}
		return ""
	}
	_, parsed, err := dispatcher.Load(o, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed.Warnings) > 0 {
		t.Errorf("the services warned: %v", parsed.Warnings)
	}
	type view struct {
		Type, Host, User, Pass, Encoding, TLS, TLSServerName, TLSCAFile, TLSMaxVersion, BasePath string
		Port, MaxConnections                                                                     int
		Active, TrustPASV, DisableEPSV, Insecure                                                 bool
		Timeout                                                                                  time.Duration
	}
	want := map[string]view{
		"ftp-a": {"ftp", "ftp.example", "alice", "pa;ss #%word", "latin-1", "explicit", "srv", "/ca.pem", "1.3", "", 2121, 4, false, true, true, true, 2500 * time.Millisecond},
		"ftp-b": {"ftp", "b.example", "bob", "from-file", "utf-8", "none", "", "", "1.2", "", 21, 0, true, false, false, false, 0},
		"ftp-c": {"ftp", "c.example", "anonymous", "from-env", "utf-8", "none", "", "", "1.2", "", 21, 0, false, false, false, false, 0},
		"anon":  {"ftp", "127.0.0.1", "anonymous", "anonymous", "utf-8", "none", "", "", "1.2", "", 2100, 0, false, false, false, false, 0},
		"local": {"local", "", "", "", "", "", "", "", "", dir, 0, 0, false, false, false, false, 0},
	}
	if len(parsed.Endpoints) != len(want) {
		t.Errorf("the services read %d endpoints, want %d", len(parsed.Endpoints), len(want))
	}
	for id, w := range want {
		e, ok := parsed.Endpoint(id)
		if !ok {
			t.Errorf("no endpoint %s", id)
			continue
		}
		got := view{string(e.Type), e.Host, e.User, e.Password.Reveal(), string(e.Encoding), string(e.TLS), e.TLSServerName, e.TLSCAFile,
			e.TLSMaxVersion, e.BasePath, e.Port, e.MaxConnections, e.Active, e.TrustPASVAddress, e.DisableEPSV, e.TLSInsecureSkipVerify, e.Timeout}
		if got != w {
			t.Errorf("%s: the services read %+v, want %+v", id, got, w)
		}
	}
	if conns.Endpoint("ftp-b") == nil || conns.Endpoint("nope") != nil {
		t.Error("Endpoint finds the wrong sections")
	}
}

// TestSFTPConnectionsReachTheServices: every SFTP key the harness writes is
// one the services read, with the meaning the harness gives it.
func TestSFTPConnectionsReachTheServices(t *testing.T) {
	dir := t.TempDir()
	known, key := filepath.Join(dir, "known_hosts"), filepath.Join(dir, "id")
	for _, f := range []string{known, key} {
		if err := os.WriteFile(f, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a := SFTP("sftp-a", "127.0.0.1:2822", "alice", "pw", known)
	a.MaxConnections, a.MaxSessionsPerConnection, a.Timeout = 3, 5, 2*time.Second
	b := Endpoint{ID: "sftp-b", Type: "sftp", Host: "h", User: "bob", KeyFile: key,
		HostKeyFingerprint: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"}
	c := Endpoint{ID: "sftp-c", Type: "sftp", Host: "h", User: "carol", Pass: "x", InsecureIgnoreHostKey: true}
	cfg := Default()
	cfg.Kafka.BootstrapServers = []string{"127.0.0.1:9092"}
	o := files(t, mustMarshal(t, cfg, false))
	if err := (Connections{a, b, c, Local("local", dir)}).Write(o.ConnectionsPath, "test"); err != nil {
		t.Fatal(err)
	}
	_, parsed, err := dispatcher.Load(o, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range parsed.Warnings {
		if !strings.Contains(w, "insecure_ignore_host_key") {
			t.Errorf("the services warned: %s", w)
		}
	}
	ea, _ := parsed.Endpoint("sftp-a")
	if ea.Port != 2822 || ea.Password.Reveal() != "pw" || ea.SFTP.KnownHostsFile != known || ea.MaxConnections != 3 ||
		ea.SFTP.MaxSessionsPerConnection != 5 || ea.Timeout != 2*time.Second {
		t.Errorf("sftp-a: %+v", ea)
	}
	eb, _ := parsed.Endpoint("sftp-b")
	if eb.Port != 22 || eb.SFTP.KeyFile != key || len(eb.SFTP.HostKeyFingerprints) != 1 {
		t.Errorf("sftp-b: %+v", eb)
	}
	if ec, _ := parsed.Endpoint("sftp-c"); !ec.SFTP.InsecureIgnoreHostKey {
		t.Errorf("sftp-c: %+v", ec)
	}
}
