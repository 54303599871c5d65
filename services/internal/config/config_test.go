package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// originalConfig is the original service's k8s/test ConfigMap config.yaml.
const originalConfig = `kafka:
  bootstrap_servers:
    - "kafka-broker-0.kafka-broker.kafka:9092"
    - "kafka-broker-1.kafka-broker.kafka:9092"
  consumer_group: "ftp-pooler-test"
  input_topic: "ftp-tasks"
  result_topic: "ftp-results"
  fail_topic: "ftp-failures"
  dlq_topic: "ftp-tasks-dlq"
  max_retries: 3
  base_backoff_ms: 100
  max_backoff_ms: 10000

pool:
  max_sessions_per_pod: 50
  max_sessions_per_connection: 10
  session_timeout_seconds: 300
  prewarm_enabled: false
  prewarm_sessions_per_connection: 2

transfer:
  transfer_timeout_seconds: 300
  connect_timeout_seconds: 30

circuit_breaker:
  failure_threshold: 5
  success_threshold: 2
  timeout_seconds: 60
  half_open_max_calls: 1

api:
  host: "0.0.0.0"
  port: 8080

metrics:
  port: 9090

logging:
  level: "DEBUG"
  format: "json"
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFileOriginal(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFile(writeFile(t, "config.yaml", originalConfig))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dispatcher.InstanceID = "d0"
	if err := cfg.Validate(RoleDispatcher); err != nil {
		t.Fatal(err)
	}
	want := []string{"kafka-broker-0.kafka-broker.kafka:9092", "kafka-broker-1.kafka-broker.kafka:9092"}
	if strings.Join(cfg.Kafka.BootstrapServers, ",") != strings.Join(want, ",") {
		t.Errorf("bootstrap_servers = %v, want %v", cfg.Kafka.BootstrapServers, want)
	}
	if cfg.Kafka.ConsumerGroup != "ftp-pooler-test" || cfg.Kafka.DLQTopic != "ftp-tasks-dlq" {
		t.Errorf("kafka = %+v", cfg.Kafka)
	}
	if cfg.Pool.MaxSessionsPerPod != 50 || cfg.Transfer.ConnectTimeoutSeconds != 30 || cfg.CircuitBreaker.TimeoutSeconds != 60 {
		t.Errorf("pool/transfer/breaker not read: %+v %+v %+v", cfg.Pool, cfg.Transfer, cfg.CircuitBreaker)
	}
	if cfg.Logging.Level != "DEBUG" {
		t.Errorf("logging.level = %q", cfg.Logging.Level)
	}
	// Keys the file leaves out keep their defaults.
	if cfg.Kafka.Delivery != DeliveryExactlyOnce || cfg.Lease.TTL.D() != 30*time.Second {
		t.Errorf("defaults lost: delivery %q ttl %s", cfg.Kafka.Delivery, cfg.Lease.TTL)
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		check   func(t *testing.T, c Config)
		wantErr string // substring; "" means success
	}{
		{
			name: "bootstrap servers as comma string",
			yaml: "kafka:\n  bootstrap_servers: \"a:9092, b:9092\"\n",
			check: func(t *testing.T, c Config) {
				if got := c.Kafka.BootstrapServers.String(); got != "a:9092,b:9092" {
					t.Errorf("got %q", got)
				}
			},
		},
		{
			name: "empty section keeps defaults",
			yaml: "kafka:\n  bootstrap_servers: [k:9092]\npool:\n",
			check: func(t *testing.T, c Config) {
				if c.Pool.MaxSessionsPerConnection != 10 {
					t.Errorf("pool defaults lost: %+v", c.Pool)
				}
			},
		},
		{
			name: "empty file is all defaults",
			yaml: "",
			check: func(t *testing.T, c Config) {
				if c.Kafka.InputTopic != "ftp-tasks" {
					t.Errorf("input_topic = %q", c.Kafka.InputTopic)
				}
			},
		},
		{
			name: "durations",
			yaml: "lease:\n  ttl: 2m\n  heartbeat_interval: 250ms\n",
			check: func(t *testing.T, c Config) {
				if c.Lease.TTL.D() != 2*time.Minute || c.Lease.HeartbeatInterval.D() != 250*time.Millisecond {
					t.Errorf("lease = %+v", c.Lease)
				}
			},
		},
		{
			name: "librdkafka passthrough",
			yaml: "kafka:\n  client:\n    security.protocol: SASL_SSL\n    sasl.mechanisms: PLAIN\n",
			check: func(t *testing.T, c Config) {
				if c.Kafka.Client["security.protocol"] != "SASL_SSL" {
					t.Errorf("client = %v", c.Kafka.Client)
				}
			},
		},
		{name: "unknown key", yaml: "kafka:\n  bootstrap_server: [a:1]\n", wantErr: "bootstrap_server"},
		{name: "unknown section", yaml: "kafak:\n  x: 1\n", wantErr: "kafak"},
		{name: "wrong type", yaml: "pool:\n  max_sessions_per_pod: many\n", wantErr: "max_sessions_per_pod"},
		{name: "bad duration", yaml: "lease:\n  ttl: 30\n", wantErr: "not a duration"},
		{name: "not yaml", yaml: "kafka: [\n", wantErr: "yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "config.yaml", tc.yaml)
			cfg, err := LoadFile(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v, want one naming %q and the file", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	t.Parallel()
	_, err := LoadFile(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("err = %v, want one naming the file", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	base := func() Config {
		c := Default()
		c.Kafka.BootstrapServers = StringList{"k:9092"}
		c.Dispatcher.InstanceID = "d0"
		c.Agent.Dispatchers = StringList{"d:7070"}
		return c
	}
	tests := []struct {
		name    string
		role    Role
		mutate  func(c *Config)
		wantKey string
	}{
		{name: "valid dispatcher", role: RoleDispatcher, mutate: func(*Config) {}},
		{name: "valid agent", role: RoleAgent, mutate: func(*Config) {}},
		{name: "no brokers", role: RoleDispatcher, mutate: func(c *Config) { c.Kafka.BootstrapServers = nil }, wantKey: "kafka.bootstrap_servers"},
		{name: "broker without port", role: RoleDispatcher, mutate: func(c *Config) { c.Kafka.BootstrapServers = StringList{"kafka"} }, wantKey: "kafka.bootstrap_servers"},
		{name: "input equals result topic", role: RoleDispatcher, mutate: func(c *Config) { c.Kafka.ResultTopic = c.Kafka.InputTopic }, wantKey: "kafka.input_topic"},
		{name: "bad delivery", role: RoleDispatcher, mutate: func(c *Config) { c.Kafka.Delivery = "maybe" }, wantKey: "kafka.delivery"},
		{name: "heartbeat too slow", role: RoleDispatcher, mutate: func(c *Config) { c.Lease.HeartbeatInterval = c.Lease.TTL }, wantKey: "lease.heartbeat_interval"},
		{name: "no leases per connection", role: RoleDispatcher, mutate: func(c *Config) { c.Lease.LeasesPerConnection = 0 }, wantKey: "lease.leases_per_connection"},
		{name: "too many leases per connection", role: RoleDispatcher, mutate: func(c *Config) { c.Lease.LeasesPerConnection = 17 }, wantKey: "lease.leases_per_connection"},
		{name: "no dispatchers", role: RoleAgent, mutate: func(c *Config) { c.Agent.Dispatchers = nil }, wantKey: "agent.dispatchers"},
		{name: "zero slots", role: RoleAgent, mutate: func(c *Config) { c.Agent.Slots = 0 }, wantKey: "agent.slots"},
		{name: "tiny buffer", role: RoleAgent, mutate: func(c *Config) { c.Transfer.BufferSize = 10 }, wantKey: "transfer.buffer_size"},
		{name: "bad level", role: RoleAgent, mutate: func(c *Config) { c.Logging.Level = "LOUD" }, wantKey: "logging.level"},
		{name: "bad format", role: RoleDispatcher, mutate: func(c *Config) { c.Logging.Format = "xml" }, wantKey: "logging.format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := base()
			tc.mutate(&c)
			err := c.Validate(tc.role)
			if tc.wantKey == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantKey) {
				t.Fatalf("err = %v, want one naming %s", err, tc.wantKey)
			}
		})
	}
}

func TestApplyEnv(t *testing.T) {
	t.Parallel()
	c := Default()
	env := map[string]string{
		EnvBootstrapServers: "x:1,y:2",
		EnvDispatchers:      "d1:7070, d2:7070",
		EnvInstanceID:       "disp-3",
		EnvLogLevel:         "debug",
	}
	c.ApplyEnv(func(k string) string { return env[k] })
	if c.Kafka.BootstrapServers.String() != "x:1,y:2" || c.Agent.Dispatchers.String() != "d1:7070,d2:7070" ||
		c.Dispatcher.InstanceID != "disp-3" || c.Logging.Level != "debug" {
		t.Fatalf("env not applied: %+v %+v %+v", c.Kafka, c.Agent, c.Dispatcher)
	}
}

func FuzzLoadConfigYAML(f *testing.F) {
	f.Add([]byte(originalConfig))
	f.Add([]byte("kafka:\n  bootstrap_servers: a:1,b:2\n"))
	f.Add([]byte("lease: {ttl: 1s}\n"))
	f.Add([]byte("- 1\n- 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Default()
		if err := decodeYAML(data, &cfg); err != nil {
			return
		}
		// Whatever decodes must validate or be refused with a message, never panic.
		_ = cfg.Validate(RoleDispatcher)
		_ = cfg.Validate(RoleAgent)
	})
}

// The shutdown's and the trace flush's bounds were constants before they
// were keys; their defaults are those constants, so a file without them
// shuts down as before.
func TestShutdownTimeoutDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFile(writeFile(t, "config.yaml", originalConfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key       string
		got, want Duration
	}{
		{"dispatcher.shutdown.final_flush_timeout", cfg.Dispatcher.Shutdown.FinalFlushTimeout, Duration(30 * time.Second)},
		{"dispatcher.shutdown.producer_flush_timeout", cfg.Dispatcher.Shutdown.ProducerFlushTimeout, Duration(5 * time.Second)},
		{"dispatcher.shutdown.lease_server_stop_timeout", cfg.Dispatcher.Shutdown.LeaseServerStopTimeout, Duration(5 * time.Second)},
		{"dispatcher.shutdown.admin_server_stop_timeout", cfg.Dispatcher.Shutdown.AdminServerStopTimeout, Duration(2 * time.Second)},
		{"kafka.committed_offsets_timeout", cfg.Kafka.CommittedOffsetsTimeout, Duration(15 * time.Second)},
		{"telemetry.flush_timeout", cfg.Telemetry.FlushTimeout, Duration(5 * time.Second)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %s, want %s", c.key, c.got, c.want)
		}
	}
}

func TestShutdownTimeoutsFromFile(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFile(writeFile(t, "config.yaml", "kafka:\n  committed_offsets_timeout: 3s\n"+
		"dispatcher:\n  shutdown:\n    final_flush_timeout: 1m\n    producer_flush_timeout: 250ms\n"+
		"    lease_server_stop_timeout: 7s\n    admin_server_stop_timeout: 1s\n"+
		"telemetry:\n  flush_timeout: 500ms\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Dispatcher.Shutdown
	if s.FinalFlushTimeout.D() != time.Minute || s.ProducerFlushTimeout.D() != 250*time.Millisecond ||
		s.LeaseServerStopTimeout.D() != 7*time.Second || s.AdminServerStopTimeout.D() != time.Second {
		t.Errorf("dispatcher.shutdown = %+v", s)
	}
	if cfg.Kafka.CommittedOffsetsTimeout.D() != 3*time.Second || cfg.Telemetry.FlushTimeout.D() != 500*time.Millisecond {
		t.Errorf("committed_offsets_timeout %s, telemetry.flush_timeout %s", cfg.Kafka.CommittedOffsetsTimeout, cfg.Telemetry.FlushTimeout)
	}
	// A section given in part keeps the defaults of the keys it leaves out.
	cfg, err = LoadFile(writeFile(t, "config.yaml", "dispatcher:\n  shutdown:\n    final_flush_timeout: 1m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dispatcher.Shutdown.AdminServerStopTimeout.D() != 2*time.Second {
		t.Errorf("admin_server_stop_timeout = %s, want the default 2s", cfg.Dispatcher.Shutdown.AdminServerStopTimeout)
	}
}

func TestShutdownTimeoutsRejected(t *testing.T) {
	t.Parallel()
	base := func() Config {
		c := Default()
		c.Kafka.BootstrapServers = StringList{"k:9092"}
		c.Dispatcher.InstanceID = "d0"
		c.Agent.Dispatchers = StringList{"d:7070"}
		return c
	}
	tests := []struct {
		name   string
		role   Role
		mutate func(c *Config)
		want   string
	}{
		{"zero final flush", RoleDispatcher, func(c *Config) { c.Dispatcher.Shutdown.FinalFlushTimeout = 0 },
			"dispatcher.shutdown.final_flush_timeout: must be a positive duration, got 0s"},
		{"negative producer flush", RoleDispatcher, func(c *Config) { c.Dispatcher.Shutdown.ProducerFlushTimeout = Duration(-time.Second) },
			"dispatcher.shutdown.producer_flush_timeout: must be a positive duration, got -1s"},
		{"producer flush under a millisecond", RoleDispatcher, func(c *Config) { c.Dispatcher.Shutdown.ProducerFlushTimeout = Duration(500 * time.Microsecond) },
			"dispatcher.shutdown.producer_flush_timeout: must be at least 1ms (the Kafka client counts whole milliseconds), got 500µs"},
		{"zero lease server stop", RoleDispatcher, func(c *Config) { c.Dispatcher.Shutdown.LeaseServerStopTimeout = 0 },
			"dispatcher.shutdown.lease_server_stop_timeout: must be a positive duration, got 0s"},
		{"negative admin server stop", RoleDispatcher, func(c *Config) { c.Dispatcher.Shutdown.AdminServerStopTimeout = Duration(-time.Millisecond) },
			"dispatcher.shutdown.admin_server_stop_timeout: must be a positive duration, got -1ms"},
		{"zero committed offsets", RoleDispatcher, func(c *Config) { c.Kafka.CommittedOffsetsTimeout = 0 },
			"kafka.committed_offsets_timeout: must be a positive duration, got 0s"},
		{"committed offsets under a millisecond", RoleDispatcher, func(c *Config) { c.Kafka.CommittedOffsetsTimeout = Duration(time.Microsecond) },
			"kafka.committed_offsets_timeout: must be at least 1ms"},
		{"zero trace flush, dispatcher", RoleDispatcher, func(c *Config) { c.Telemetry.FlushTimeout = 0 },
			"telemetry.flush_timeout: must be a positive duration, got 0s"},
		{"negative trace flush, agent", RoleAgent, func(c *Config) { c.Telemetry.FlushTimeout = Duration(-5 * time.Second) },
			"telemetry.flush_timeout: must be a positive duration, got -5s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := base()
			tc.mutate(&c)
			err := c.Validate(tc.role)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// The dispatcher's shutdown is no business of the agent's.
	c := base()
	c.Dispatcher.Shutdown = DispatcherShutdown{}
	if err := c.Validate(RoleAgent); err != nil {
		t.Errorf("agent refused the dispatcher's shutdown keys: %v", err)
	}
}

// A duration that does not parse names its line and its key.
func TestBadDurationNamesTheKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ yaml, want string }{
		{"dispatcher:\n  shutdown:\n    final_flush_timeout: soon\n", `line 3 (dispatcher.shutdown.final_flush_timeout): "soon" is not a duration`},
		{"telemetry:\n  flush_timeout: 5\n", `line 2 (telemetry.flush_timeout): "5" is not a duration`},
		{"kafka:\n  committed_offsets_timeout: [1s]\n", `line 2 (kafka.committed_offsets_timeout): want a duration`},
		{"lease:\n  ttl: 30\n", `line 2 (lease.ttl): "30" is not a duration`},
	} {
		_, err := LoadFile(writeFile(t, "config.yaml", tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}
