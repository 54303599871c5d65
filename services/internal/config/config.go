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
	Telemetry      Telemetry      `yaml:"telemetry"`

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
	// CommittedOffsetsTimeout bounds the fetch of the group's committed
	// offsets, with the tasks the previous owner finished beyond them, when
	// partitions are assigned; past it the assignment goes on rather than
	// stalling, and those tasks may be done again.
	CommittedOffsetsTimeout Duration `yaml:"committed_offsets_timeout"`
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
	// DrainTimeout is how long shutdown waits for leases in flight. It is
	// the first of the shutdown's bounds; it stays outside Shutdown because
	// existing files and the Helm chart set it here.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// Shutdown bounds the steps of the shutdown after the drain.
	Shutdown DispatcherShutdown `yaml:"shutdown"`
	// TLS secures the agents' lease stream; with ClientCAFile set, agents
	// must present a certificate signed by it (mutual TLS).
	TLS TLSFiles `yaml:"tls"`
	// Admin protects the admin API.
	Admin Admin `yaml:"admin"`
}

// DispatcherShutdown bounds the shutdown's steps after the drain, in the
// order they run. Past a bound the shutdown goes on: a task whose outcome
// was not committed is redone by its partition's next owner.
type DispatcherShutdown struct {
	// FinalFlushTimeout is how long the outcomes that finished get to be
	// published and their offsets committed.
	FinalFlushTimeout Duration `yaml:"final_flush_timeout"`
	// ProducerFlushTimeout is how long the Kafka producer gets to deliver
	// what it still holds before it is closed.
	ProducerFlushTimeout Duration `yaml:"producer_flush_timeout"`
	// LeaseServerStopTimeout is how long the lease gRPC server waits for
	// agents' streams to end before it cuts them.
	LeaseServerStopTimeout Duration `yaml:"lease_server_stop_timeout"`
	// AdminServerStopTimeout is the same for the admin API's calls.
	AdminServerStopTimeout Duration `yaml:"admin_server_stop_timeout"`
}

// Telemetry configures what both binaries do with traces beyond the
// OTEL_* environment variables.
type Telemetry struct {
	// FlushTimeout is how long exit waits for the last spans to reach the
	// exporter.
	FlushTimeout Duration `yaml:"flush_timeout"`
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
			ConsumerGroup:           "ftp-pooler",
			InputTopic:              "ftp-tasks",
			ResultTopic:             "ftp-results",
			FailTopic:               "ftp-failures",
			DLQTopic:                "ftp-tasks-dlq",
			MaxRetries:              3,
			BaseBackoffMS:           100,
			MaxBackoffMS:            1000,
			Delivery:                DeliveryExactlyOnce,
			CommitInterval:          Duration(20 * time.Millisecond),
			BatchMaxOutcomes:        1000,
			MaxBufferedTasks:        20000,
			CommittedOffsetsTimeout: Duration(15 * time.Second),
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
			Shutdown: DispatcherShutdown{
				FinalFlushTimeout:      Duration(30 * time.Second),
				ProducerFlushTimeout:   Duration(5 * time.Second),
				LeaseServerStopTimeout: Duration(5 * time.Second),
				AdminServerStopTimeout: Duration(2 * time.Second),
			},
		},
		Agent: Agent{
			Slots:               16,
			DrainTimeout:        Duration(60 * time.Second),
			ReconnectMaxBackoff: Duration(10 * time.Second),
		},
		Telemetry: Telemetry{FlushTimeout: Duration(5 * time.Second)},
	}
}

// Role selects which keys Validate requires.
type Role int

// The processes that read the configuration.
const (
	RoleDispatcher Role = iota
	RoleAgent
)

// Validate checks the configuration for role and names every bad key.
func (c *Config) Validate(role Role) error {
	var p problems
	switch role {
	case RoleDispatcher:
		c.Kafka.validate(&p)
		c.Retry.validate(&p)
		c.Lease.validateForDispatcher(&p)
		c.CircuitBreaker.validate(&p)
		c.Dispatcher.validate(&p)
		p.positiveDur("pool.limit_recovery_interval", c.Pool.LimitRecoveryInterval)
	case RoleAgent:
		c.Agent.validate(&p)
		c.Pool.validateForAgent(&p)
		p.positiveDur("lease.connection_wait", c.Lease.ConnectionWait)
		c.Transfer.validate(&p)
	}
	p.positive("pool.max_sessions_per_connection", c.Pool.MaxSessionsPerConnection)
	c.Logging.validate(&p)
	p.positiveDur("telemetry.flush_timeout", c.Telemetry.FlushTimeout)
	return p.err(c.Path)
}

// problems collects what Validate finds, each prefixed with its key, so one
// run reports every bad key rather than the first.
type problems struct{ errs []string }

func (p *problems) bad(key, format string, args ...any) {
	p.errs = append(p.errs, key+": "+fmt.Sprintf(format, args...))
}

func (p *problems) positive(key string, v int) {
	if v <= 0 {
		p.bad(key, "must be positive, got %d", v)
	}
}

func (p *problems) positiveDur(key string, d Duration) {
	if d <= 0 {
		p.bad(key, "must be a positive duration, got %s", d)
	}
}

// positiveMillis checks a duration librdkafka takes in whole milliseconds,
// where anything shorter would become 0 and mean "do not wait".
func (p *problems) positiveMillis(key string, d Duration) {
	switch {
	case d <= 0:
		p.positiveDur(key, d)
	case d < Duration(time.Millisecond):
		p.bad(key, "must be at least 1ms (the Kafka client counts whole milliseconds), got %s", d)
	}
}

func (p *problems) err(path string) error {
	if len(p.errs) == 0 {
		return nil
	}
	if path == "" {
		path = "configuration"
	}
	sortStrings(p.errs)
	return fmt.Errorf("%s: %s", path, strings.Join(p.errs, "; "))
}

func (k *Kafka) validate(p *problems) {
	if len(k.BootstrapServers) == 0 {
		p.bad("kafka.bootstrap_servers", "required: list at least one broker (host:port)")
	}
	for _, s := range k.BootstrapServers {
		if !strings.Contains(s, ":") {
			p.bad("kafka.bootstrap_servers", "%q is not host:port", s)
		}
	}
	for key, v := range map[string]string{
		"kafka.consumer_group": k.ConsumerGroup,
		"kafka.input_topic":    k.InputTopic,
		"kafka.result_topic":   k.ResultTopic,
		"kafka.fail_topic":     k.FailTopic,
		"kafka.dlq_topic":      k.DLQTopic,
	} {
		if strings.TrimSpace(v) == "" {
			p.bad(key, "must not be empty")
		}
	}
	if k.InputTopic != "" && (k.InputTopic == k.ResultTopic || k.InputTopic == k.FailTopic || k.InputTopic == k.DLQTopic) {
		p.bad("kafka.input_topic", "must differ from the outcome topics, or outcomes would be read back as tasks")
	}
	switch k.Delivery {
	case DeliveryExactlyOnce, DeliveryAtLeastOnce:
	default:
		p.bad("kafka.delivery", "must be %s or %s, got %q", DeliveryExactlyOnce, DeliveryAtLeastOnce, k.Delivery)
	}
	if k.MaxRetries < 0 {
		p.bad("kafka.max_retries", "must not be negative, got %d", k.MaxRetries)
	}
	p.positive("kafka.base_backoff_ms", k.BaseBackoffMS)
	p.positive("kafka.max_backoff_ms", k.MaxBackoffMS)
	p.positiveDur("kafka.commit_interval", k.CommitInterval)
	p.positive("kafka.batch_max_outcomes", k.BatchMaxOutcomes)
	p.positive("kafka.max_buffered_tasks", k.MaxBufferedTasks)
	p.positiveMillis("kafka.committed_offsets_timeout", k.CommittedOffsetsTimeout)
}

func (r *Retry) validate(p *problems) {
	p.positive("retry.max_attempts", r.MaxAttempts)
	p.positiveDur("retry.base_backoff", r.BaseBackoff)
	p.positiveDur("retry.max_backoff", r.MaxBackoff)
	if r.MaxOutage < 0 {
		p.bad("retry.max_outage", "must be 0 (wait for ever) or positive, got %s", r.MaxOutage)
	}
}

// validateForDispatcher checks the keys the dispatcher's scheduler reads;
// the agent reads only connection_wait.
func (l *Lease) validateForDispatcher(p *problems) {
	p.positiveDur("lease.ttl", l.TTL)
	p.positiveDur("lease.heartbeat_interval", l.HeartbeatInterval)
	if l.HeartbeatInterval*2 > l.TTL {
		p.bad("lease.heartbeat_interval", "must be at most half of lease.ttl (%s), got %s", l.TTL, l.HeartbeatInterval)
	}
	if n := l.LeasesPerConnection; n < 1 || n > 16 {
		p.bad("lease.leases_per_connection", "must be between 1 (a lease per connection) and 16, got %d", n)
	}
}

func (b *CircuitBreaker) validate(p *problems) {
	p.positive("circuit_breaker.failure_threshold", b.FailureThreshold)
	p.positive("circuit_breaker.success_threshold", b.SuccessThreshold)
	p.positive("circuit_breaker.timeout_seconds", b.TimeoutSeconds)
	p.positive("circuit_breaker.half_open_max_calls", b.HalfOpenMaxCalls)
}

func (d *Dispatcher) validate(p *problems) {
	if d.Listen == "" {
		p.bad("dispatcher.listen", "must not be empty")
	}
	if d.InstanceID == "" {
		p.bad("dispatcher.instance_id", "must not be empty")
	}
	p.positiveDur("dispatcher.drain_timeout", d.DrainTimeout)
	p.positiveDur("dispatcher.shutdown.final_flush_timeout", d.Shutdown.FinalFlushTimeout)
	p.positiveMillis("dispatcher.shutdown.producer_flush_timeout", d.Shutdown.ProducerFlushTimeout)
	p.positiveDur("dispatcher.shutdown.lease_server_stop_timeout", d.Shutdown.LeaseServerStopTimeout)
	p.positiveDur("dispatcher.shutdown.admin_server_stop_timeout", d.Shutdown.AdminServerStopTimeout)
	d.TLS.validate("dispatcher.tls", true, p)
	d.Admin.TLS.validate("dispatcher.admin.tls", true, p)
}

func (a *Agent) validate(p *problems) {
	if len(a.Dispatchers) == 0 {
		p.bad("agent.dispatchers", "required: list at least one dispatcher (host:port), or pass --dispatcher")
	}
	p.positive("agent.slots", a.Slots)
	p.positiveDur("agent.drain_timeout", a.DrainTimeout)
	p.positiveDur("agent.reconnect_max_backoff", a.ReconnectMaxBackoff)
	a.TLS.validate("agent.tls", false, p)
}

// validateForAgent checks the keys the agent's connection pool reads; the
// dispatcher reads only limit_recovery_interval.
func (pl *Pool) validateForAgent(p *problems) {
	p.positive("pool.max_sessions_per_pod", pl.MaxSessionsPerPod)
	p.positive("pool.session_timeout_seconds", pl.SessionTimeoutSeconds)
	p.positiveDur("pool.check_idle_after", pl.CheckIdleAfter)
	if pl.PrewarmEnabled {
		p.positive("pool.prewarm_sessions_per_connection", pl.PrewarmSessionsPerConnection)
	}
}

func (t *Transfer) validate(p *problems) {
	p.positive("transfer.transfer_timeout_seconds", t.TransferTimeoutSeconds)
	p.positive("transfer.connect_timeout_seconds", t.ConnectTimeoutSeconds)
	p.positiveDur("transfer.idle_timeout", t.IdleTimeout)
	if t.MinRateBytesPerSecond <= 0 {
		p.bad("transfer.min_rate_bytes_per_second", "must be positive, got %d", t.MinRateBytesPerSecond)
	}
	if t.BufferSize < 4096 {
		p.bad("transfer.buffer_size", "must be at least 4096 bytes, got %d", t.BufferSize)
	}
}

func (l *Logging) validate(p *problems) {
	if _, err := ParseLevel(l.Level); err != nil {
		p.bad("logging.level", "%v", err)
	}
	switch strings.ToLower(l.Format) {
	case "json", "text":
	default:
		p.bad("logging.format", "must be json or text, got %q", l.Format)
	}
}

// validate checks that the files form a usable set; server sides need a
// certificate and key, client sides at least a CA.
func (t TLSFiles) validate(key string, server bool, p *problems) {
	if !t.Enabled() {
		return
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		p.bad(key+".cert_file", "cert_file and key_file go together")
	}
	if server && t.CertFile == "" {
		p.bad(key+".cert_file", "required when TLS is configured: the server needs a certificate")
	}
	if server && t.CAFile != "" {
		p.bad(key+".ca_file", "is for clients; a server verifies clients with client_ca_file")
	}
	if !server && t.ClientCAFile != "" {
		p.bad(key+".client_ca_file", "is for servers; an agent verifies dispatchers with ca_file")
	}
}
