// Package config loads config.yaml and connections.ini, the two files of the
// original Python service, unchanged, plus the keys FTP Pooler adds.
//
// Layering is defaults ← file ← environment ← flags: Default holds every
// default, LoadFile overlays the file, ApplyEnv the environment, and each
// binary applies its flags before calling Validate. An unreadable or invalid
// file stops start-up with the file and key named; nothing falls back to
// defaults silently.
package config

import (
	"fmt"
	"strings"
	"time"
)

// Delivery modes for outcomes.
const (
	// DeliveryExactlyOnce publishes outcomes and consumer offsets in one
	// Kafka transaction: read_committed consumers see each outcome once.
	DeliveryExactlyOnce = "exactly_once"
	// DeliveryAtLeastOnce publishes outcomes with an idempotent producer and
	// commits offsets after delivery: lower latency, duplicates possible
	// after a crash.
	DeliveryAtLeastOnce = "at_least_once"
)

// Config is config.yaml.
type Config struct {
	Kafka          Kafka          `yaml:"kafka"`
	Pool           Pool           `yaml:"pool"`
	Transfer       Transfer       `yaml:"transfer"`
	Retry          Retry          `yaml:"retry"`
	Lease          Lease          `yaml:"lease"`
	CircuitBreaker CircuitBreaker `yaml:"circuit_breaker"`
	API            API            `yaml:"api"`
	Metrics        Metrics        `yaml:"metrics"`
	Logging        Logging        `yaml:"logging"`
	Dispatcher     Dispatcher     `yaml:"dispatcher"`
	Agent          Agent          `yaml:"agent"`

	// Path is the file the configuration was read from ("" for defaults).
	Path string `yaml:"-"`
}

// Kafka configures the dispatcher's Kafka clients. Keys down to
// max_backoff_ms are the original service's.
type Kafka struct {
	BootstrapServers StringList `yaml:"bootstrap_servers"`
	ConsumerGroup    string     `yaml:"consumer_group"`
	InputTopic       string     `yaml:"input_topic"`
	ResultTopic      string     `yaml:"result_topic"`
	FailTopic        string     `yaml:"fail_topic"`
	DLQTopic         string     `yaml:"dlq_topic"`
	// MaxRetries, BaseBackoffMS and MaxBackoffMS tuned the original's
	// produce retries; they set librdkafka's retries, retry.backoff.ms and
	// retry.backoff.max.ms.
	MaxRetries    int `yaml:"max_retries"`
	BaseBackoffMS int `yaml:"base_backoff_ms"`
	MaxBackoffMS  int `yaml:"max_backoff_ms"`

	// Delivery is exactly_once (transactions) or at_least_once.
	Delivery string `yaml:"delivery"`
	// TransactionalID must be unique per dispatcher and stable across its
	// restarts; default "<consumer_group>-<dispatcher.instance_id>".
	TransactionalID string `yaml:"transactional_id"`
	// CommitInterval is how long outcomes wait to be batched into one
	// transaction (or how often offsets are committed in at_least_once).
	CommitInterval Duration `yaml:"commit_interval"`
	// BatchMaxOutcomes ends a batch early when this many outcomes wait.
	BatchMaxOutcomes int `yaml:"batch_max_outcomes"`
	// MaxBufferedTasks pauses consumption while this many tasks are read
	// but not yet committed.
	MaxBufferedTasks int `yaml:"max_buffered_tasks"`
	// Client passes librdkafka properties through unchanged, for TLS and
	// SASL (security.protocol, ssl.*, sasl.*) and tuning.
	Client map[string]string `yaml:"client"`
}

// Pool configures the agents' FTP connection pools; the keys are the
// original service's.
type Pool struct {
	// MaxSessionsPerPod caps an agent's logged-in FTP connections over all endpoints.
	MaxSessionsPerPod int `yaml:"max_sessions_per_pod"`
	// MaxSessionsPerConnection is the default per-endpoint connection limit.
	MaxSessionsPerConnection int `yaml:"max_sessions_per_connection"`
	// SessionTimeoutSeconds closes connections idle this long.
	SessionTimeoutSeconds int `yaml:"session_timeout_seconds"`
	// PrewarmEnabled logs in PrewarmSessionsPerConnection connections per FTP
	// endpoint at start-up so the first tasks do not pay for logins.
	PrewarmEnabled               bool `yaml:"prewarm_enabled"`
	PrewarmSessionsPerConnection int  `yaml:"prewarm_sessions_per_connection"`
	// CheckIdleAfter: a connection idle longer than this is checked with
	// NOOP before reuse (servers drop idle sessions: vsftpd after 300 s).
	CheckIdleAfter Duration `yaml:"check_idle_after"`
	// LimitRecoveryInterval: after a server refused a login for being full,
	// the endpoint's limit is what it accepted; each interval without
	// another refusal raises it by one, back up to max_connections, so a
	// temporary cap (another client's connections) does not stay forever.
	LimitRecoveryInterval Duration `yaml:"limit_recovery_interval"`
}

// Transfer configures how agents move bytes.
type Transfer struct {
	// TransferTimeoutSeconds is the whole-transfer deadline for small files;
	// larger files get size / min_rate_bytes_per_second on top.
	TransferTimeoutSeconds int `yaml:"transfer_timeout_seconds"`
	// ConnectTimeoutSeconds bounds dial and login.
	ConnectTimeoutSeconds int `yaml:"connect_timeout_seconds"`
	// IdleTimeout fails a transfer when no byte moves for this long.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MinRateBytesPerSecond scales the whole-transfer deadline with size.
	MinRateBytesPerSecond int64 `yaml:"min_rate_bytes_per_second"`
	// BufferSize is the copy buffer per transfer; large buffers matter (the
	// default 32 KiB io.Copy halves FTP throughput).
	BufferSize int `yaml:"buffer_size"`
	// Fsync flushes local destination files to disk before they are renamed
	// into place, so a success outcome survives a power loss.
	Fsync bool `yaml:"fsync"`
}

// Retry configures how failed deliveries are tried again.
type Retry struct {
	// MaxAttempts is the number of deliveries before a retryable failure is final.
	MaxAttempts int      `yaml:"max_attempts"`
	BaseBackoff Duration `yaml:"base_backoff"`
	MaxBackoff  Duration `yaml:"max_backoff"`
	// MaxOutage bounds how long tasks wait for an endpoint that cannot be
	// reached (its breaker open): past it they fail with CONNECTION_ERROR.
	// Waiting does not use up attempts; 0 waits for ever.
	MaxOutage Duration `yaml:"max_outage"`
}

// Lease configures the lease protocol.
type Lease struct {
	// TTL is how long a lease lives without a heartbeat.
	TTL Duration `yaml:"ttl"`
	// HeartbeatInterval is how often agents report progress.
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	// CommitTimeout is how long an agent waits for a commit decision.
	CommitTimeout Duration `yaml:"commit_timeout"`
	// LeasesPerConnection is how many leases with one FTP side may share a
	// connection of an agent's quota: the next one waits in the agent's
	// pool while the first writes the local side, commits and reports.
	LeasesPerConnection int `yaml:"leases_per_connection"`
	// ConnectionWait bounds how long a lease waits on its agent for a
	// connection other transfers hold. Past it the lease goes back to the
	// dispatcher and is leased again with a connection of its own (here or
	// on another agent): a stalled transfer must not hold up the tasks
	// queued behind it for its idle timeout.
	ConnectionWait Duration `yaml:"connection_wait"`
}

// CircuitBreaker configures the per-endpoint breaker; the keys are the
// original service's.
type CircuitBreaker struct {
	FailureThreshold int `yaml:"failure_threshold"`
	SuccessThreshold int `yaml:"success_threshold"`
	TimeoutSeconds   int `yaml:"timeout_seconds"`
	HalfOpenMaxCalls int `yaml:"half_open_max_calls"`
}

// API is the original's HTTP API address; it is the default address of the
// health and metrics endpoints (--http-listen).
type API struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
}

// Metrics is the original's Prometheus port; /metrics is served there too
// when it differs from api.port, so existing scrape configs keep working.
type Metrics struct {
	Port int `yaml:"port"`
	// Pprof serves Go's profiles (/debug/pprof/) beside /metrics, for
	// finding where CPU and memory go in production. Off by default: a
	// profile shows paths and names to whoever can reach the port.
	Pprof bool `yaml:"pprof"`
}

// Logging configures log/slog.
type Logging struct {
	// Level is DEBUG, INFO, WARNING (or WARN) or ERROR.
	Level string `yaml:"level"`
	// Format is json or text.
	Format string `yaml:"format"`
}

// Dispatcher configures the dispatcher process.
type Dispatcher struct {
	// Listen is the agents' lease stream address.
	Listen string `yaml:"listen"`
	// AdminListen is the admin gRPC address.
	AdminListen string `yaml:"admin_listen"`
	// HTTPListen serves /metrics, /healthz and /readyz; default api.host:api.port.
	HTTPListen string `yaml:"http_listen"`
	// InstanceID names this dispatcher (default: the host name). It must be
	// unique among dispatchers and stable across restarts.
	InstanceID string `yaml:"instance_id"`
	// DrainTimeout is how long shutdown waits for leases in flight.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// TLS secures the agents' lease stream; with ClientCAFile set, agents
	// must present a certificate signed by it (mutual TLS).
	TLS TLSFiles `yaml:"tls"`
	// Admin protects the admin API.
	Admin Admin `yaml:"admin"`
}

// TLSFiles names PEM files, so a Kubernetes Secret or cert-manager can
// provide them. Files are re-read when they change, for rotation.
type TLSFiles struct {
	// CertFile and KeyFile are this side's certificate and key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile verifies the server (agent side).
	CAFile string `yaml:"ca_file"`
	// ClientCAFile verifies clients; set, it makes TLS mutual (server side).
	ClientCAFile string `yaml:"client_ca_file"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"server_name"`
}

// Enabled reports whether any TLS file is configured.
func (t TLSFiles) Enabled() bool { return t.CertFile != "" || t.CAFile != "" || t.ClientCAFile != "" }

// Admin protects the admin API: a bearer token, mutual TLS, or both.
type Admin struct {
	// TokenFile holds the bearer token callers must send
	// ("authorization: Bearer <token>"); FTP_POOLER_ADMIN_TOKEN also sets it.
	TokenFile string `yaml:"token_file"`
	// TLS serves the admin API over TLS (mutual with client_ca_file).
	TLS TLSFiles `yaml:"tls"`
}

// Agent configures the agent process.
type Agent struct {
	// Dispatchers are the dispatcher addresses (host:port) to connect to.
	Dispatchers StringList `yaml:"dispatchers"`
	// Slots is how many transfers run at once.
	Slots int `yaml:"slots"`
	// HTTPListen serves /metrics, /healthz and /readyz.
	HTTPListen string `yaml:"http_listen"`
	// AgentID names this agent (default: host name and process id).
	AgentID string `yaml:"agent_id"`
	// DrainTimeout is how long a SIGTERM waits for transfers in flight.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// ReconnectMaxBackoff caps the wait between reconnect attempts.
	ReconnectMaxBackoff Duration `yaml:"reconnect_max_backoff"`
	// TLS secures the stream to dispatchers: CAFile verifies them; CertFile
	// and KeyFile are the agent's client certificate for mutual TLS.
	TLS TLSFiles `yaml:"tls"`
}

// Default returns the configuration used for every key the file leaves out.
func Default() Config {
	return Config{
		Kafka: Kafka{
			ConsumerGroup:    "ftp-pooler",
			InputTopic:       "ftp-tasks",
			ResultTopic:      "ftp-results",
			FailTopic:        "ftp-failures",
			DLQTopic:         "ftp-tasks-dlq",
			MaxRetries:       3,
			BaseBackoffMS:    100,
			MaxBackoffMS:     1000,
			Delivery:         DeliveryExactlyOnce,
			CommitInterval:   Duration(20 * time.Millisecond),
			BatchMaxOutcomes: 1000,
			MaxBufferedTasks: 20000,
		},
		Pool: Pool{
			MaxSessionsPerPod:            100,
			MaxSessionsPerConnection:     10,
			SessionTimeoutSeconds:        300,
			PrewarmSessionsPerConnection: 1,
			CheckIdleAfter:               Duration(15 * time.Second),
			LimitRecoveryInterval:        Duration(time.Minute),
		},
		Transfer: Transfer{
			TransferTimeoutSeconds: 300,
			ConnectTimeoutSeconds:  10,
			IdleTimeout:            Duration(60 * time.Second),
			MinRateBytesPerSecond:  1 << 20,
			BufferSize:             1 << 20,
			Fsync:                  true,
		},
		Retry: Retry{
			MaxAttempts: 4,
			BaseBackoff: Duration(500 * time.Millisecond),
			MaxBackoff:  Duration(30 * time.Second),
			MaxOutage:   Duration(10 * time.Minute),
		},
		Lease: Lease{
			TTL:                 Duration(30 * time.Second),
			HeartbeatInterval:   Duration(5 * time.Second),
			CommitTimeout:       Duration(10 * time.Second),
			LeasesPerConnection: 2,
			ConnectionWait:      Duration(time.Second),
		},
		CircuitBreaker: CircuitBreaker{
			FailureThreshold: 5,
			SuccessThreshold: 2,
			TimeoutSeconds:   30,
			HalfOpenMaxCalls: 1,
		},
		API:     API{Host: "0.0.0.0", Port: 8080},
		Metrics: Metrics{Port: 9090},
		Logging: Logging{Level: "INFO", Format: "json"},
		Dispatcher: Dispatcher{
			Listen:       ":7070",
			AdminListen:  ":7071",
			DrainTimeout: Duration(30 * time.Second),
		},
		Agent: Agent{
			Slots:               16,
			DrainTimeout:        Duration(60 * time.Second),
			ReconnectMaxBackoff: Duration(10 * time.Second),
		},
	}
}

// validate checks that the files form a usable set; server sides need a
// certificate and key, client sides at least a CA.
func (t TLSFiles) validate(key string, server bool, bad func(string, string, ...any)) {
	if !t.Enabled() {
		return
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad(key+".cert_file", "cert_file and key_file go together")
	}
	if server && t.CertFile == "" {
		bad(key+".cert_file", "required when TLS is configured: the server needs a certificate")
	}
	if server && t.CAFile != "" {
		bad(key+".ca_file", "is for clients; a server verifies clients with client_ca_file")
	}
	if !server && t.ClientCAFile != "" {
		bad(key+".client_ca_file", "is for servers; an agent verifies dispatchers with ca_file")
	}
}

// Role selects which keys Validate requires.
type Role int

// The processes that read the configuration.
const (
	RoleDispatcher Role = iota
	RoleAgent
)

// Validate checks the configuration for role and names the first bad key.
func (c *Config) Validate(role Role) error {
	var errs []string
	bad := func(key, format string, args ...any) {
		errs = append(errs, key+": "+fmt.Sprintf(format, args...))
	}
	positive := func(key string, v int) {
		if v <= 0 {
			bad(key, "must be positive, got %d", v)
		}
	}
	positiveDur := func(key string, d Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration, got %s", d)
		}
	}
	if role == RoleDispatcher {
		if len(c.Kafka.BootstrapServers) == 0 {
			bad("kafka.bootstrap_servers", "required: list at least one broker (host:port)")
		}
		for _, s := range c.Kafka.BootstrapServers {
			if !strings.Contains(s, ":") {
				bad("kafka.bootstrap_servers", "%q is not host:port", s)
			}
		}
		for key, v := range map[string]string{
			"kafka.consumer_group": c.Kafka.ConsumerGroup,
			"kafka.input_topic":    c.Kafka.InputTopic,
			"kafka.result_topic":   c.Kafka.ResultTopic,
			"kafka.fail_topic":     c.Kafka.FailTopic,
			"kafka.dlq_topic":      c.Kafka.DLQTopic,
		} {
			if strings.TrimSpace(v) == "" {
				bad(key, "must not be empty")
			}
		}
		if c.Kafka.InputTopic != "" && (c.Kafka.InputTopic == c.Kafka.ResultTopic ||
			c.Kafka.InputTopic == c.Kafka.FailTopic || c.Kafka.InputTopic == c.Kafka.DLQTopic) {
			bad("kafka.input_topic", "must differ from the outcome topics, or outcomes would be read back as tasks")
		}
		switch c.Kafka.Delivery {
		case DeliveryExactlyOnce, DeliveryAtLeastOnce:
		default:
			bad("kafka.delivery", "must be %s or %s, got %q", DeliveryExactlyOnce, DeliveryAtLeastOnce, c.Kafka.Delivery)
		}
		if c.Kafka.MaxRetries < 0 {
			bad("kafka.max_retries", "must not be negative, got %d", c.Kafka.MaxRetries)
		}
		positive("kafka.base_backoff_ms", c.Kafka.BaseBackoffMS)
		positive("kafka.max_backoff_ms", c.Kafka.MaxBackoffMS)
		positiveDur("kafka.commit_interval", c.Kafka.CommitInterval)
		positive("kafka.batch_max_outcomes", c.Kafka.BatchMaxOutcomes)
		positive("kafka.max_buffered_tasks", c.Kafka.MaxBufferedTasks)
		positive("retry.max_attempts", c.Retry.MaxAttempts)
		positiveDur("retry.base_backoff", c.Retry.BaseBackoff)
		positiveDur("retry.max_backoff", c.Retry.MaxBackoff)
		if c.Retry.MaxOutage < 0 {
			bad("retry.max_outage", "must be 0 (wait for ever) or positive, got %s", c.Retry.MaxOutage)
		}
		positiveDur("lease.ttl", c.Lease.TTL)
		positiveDur("lease.heartbeat_interval", c.Lease.HeartbeatInterval)
		if c.Lease.HeartbeatInterval*2 > c.Lease.TTL {
			bad("lease.heartbeat_interval", "must be at most half of lease.ttl (%s), got %s", c.Lease.TTL, c.Lease.HeartbeatInterval)
		}
		if n := c.Lease.LeasesPerConnection; n < 1 || n > 16 {
			bad("lease.leases_per_connection", "must be between 1 (a lease per connection) and 16, got %d", n)
		}
		positiveDur("dispatcher.drain_timeout", c.Dispatcher.DrainTimeout)
		positiveDur("pool.limit_recovery_interval", c.Pool.LimitRecoveryInterval)
		positive("circuit_breaker.failure_threshold", c.CircuitBreaker.FailureThreshold)
		positive("circuit_breaker.success_threshold", c.CircuitBreaker.SuccessThreshold)
		positive("circuit_breaker.timeout_seconds", c.CircuitBreaker.TimeoutSeconds)
		positive("circuit_breaker.half_open_max_calls", c.CircuitBreaker.HalfOpenMaxCalls)
		if c.Dispatcher.Listen == "" {
			bad("dispatcher.listen", "must not be empty")
		}
		if c.Dispatcher.InstanceID == "" {
			bad("dispatcher.instance_id", "must not be empty")
		}
		c.Dispatcher.TLS.validate("dispatcher.tls", true, bad)
		c.Dispatcher.Admin.TLS.validate("dispatcher.admin.tls", true, bad)
	}
	if role == RoleAgent {
		if len(c.Agent.Dispatchers) == 0 {
			bad("agent.dispatchers", "required: list at least one dispatcher (host:port), or pass --dispatcher")
		}
		positive("agent.slots", c.Agent.Slots)
		positiveDur("agent.drain_timeout", c.Agent.DrainTimeout)
		positiveDur("agent.reconnect_max_backoff", c.Agent.ReconnectMaxBackoff)
		positive("pool.max_sessions_per_pod", c.Pool.MaxSessionsPerPod)
		positive("pool.session_timeout_seconds", c.Pool.SessionTimeoutSeconds)
		positiveDur("pool.check_idle_after", c.Pool.CheckIdleAfter)
		positiveDur("lease.connection_wait", c.Lease.ConnectionWait)
		positive("transfer.transfer_timeout_seconds", c.Transfer.TransferTimeoutSeconds)
		positive("transfer.connect_timeout_seconds", c.Transfer.ConnectTimeoutSeconds)
		positiveDur("transfer.idle_timeout", c.Transfer.IdleTimeout)
		if c.Transfer.MinRateBytesPerSecond <= 0 {
			bad("transfer.min_rate_bytes_per_second", "must be positive, got %d", c.Transfer.MinRateBytesPerSecond)
		}
		if c.Transfer.BufferSize < 4096 {
			bad("transfer.buffer_size", "must be at least 4096 bytes, got %d", c.Transfer.BufferSize)
		}
		c.Agent.TLS.validate("agent.tls", false, bad)
		if c.Pool.PrewarmEnabled {
			positive("pool.prewarm_sessions_per_connection", c.Pool.PrewarmSessionsPerConnection)
		}
	}
	positive("pool.max_sessions_per_connection", c.Pool.MaxSessionsPerConnection)
	if _, err := ParseLevel(c.Logging.Level); err != nil {
		bad("logging.level", "%v", err)
	}
	switch strings.ToLower(c.Logging.Format) {
	case "json", "text":
	default:
		bad("logging.format", "must be json or text, got %q", c.Logging.Format)
	}
	if len(errs) == 0 {
		return nil
	}
	where := c.Path
	if where == "" {
		where = "configuration"
	}
	sortStrings(errs)
	return fmt.Errorf("%s: %s", where, strings.Join(errs, "; "))
}
