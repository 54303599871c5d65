// Package config writes config.yaml and connections.ini for the binaries
// under test from typed values, so a suite says c.Retry.MaxAttempts = 3
// instead of pasting YAML.
//
// The services' own types (services/internal/config) cannot be imported
// from this module (Go's internal rule), so Config and Endpoint mirror
// their keys, and Default mirrors their defaults. The package's tests load
// what it writes back through the real loader (dispatcher.Load,
// agent.Load): a key renamed or added there, or a default changed, fails
// them.
package config

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
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
}

// Kafka is the kafka: section.
type Kafka struct {
	BootstrapServers []string      `yaml:"bootstrap_servers"`
	ConsumerGroup    string        `yaml:"consumer_group"`
	InputTopic       string        `yaml:"input_topic"`
	ResultTopic      string        `yaml:"result_topic"`
	FailTopic        string        `yaml:"fail_topic"`
	DLQTopic         string        `yaml:"dlq_topic"`
	MaxRetries       int           `yaml:"max_retries"`
	BaseBackoffMS    int           `yaml:"base_backoff_ms"`
	MaxBackoffMS     int           `yaml:"max_backoff_ms"`
	Delivery         string        `yaml:"delivery"`
	TransactionalID  string        `yaml:"transactional_id"`
	CommitInterval   time.Duration `yaml:"commit_interval"`
	BatchMaxOutcomes int           `yaml:"batch_max_outcomes"`
	MaxBufferedTasks int           `yaml:"max_buffered_tasks"`
	// CommittedOffsetsTimeout is in whole milliseconds.
	CommittedOffsetsTimeout time.Duration     `yaml:"committed_offsets_timeout"`
	Client                  map[string]string `yaml:"client"`
}

// Pool is the pool: section.
type Pool struct {
	MaxSessionsPerPod            int           `yaml:"max_sessions_per_pod"`
	MaxSessionsPerConnection     int           `yaml:"max_sessions_per_connection"`
	SessionTimeoutSeconds        int           `yaml:"session_timeout_seconds"`
	PrewarmEnabled               bool          `yaml:"prewarm_enabled"`
	PrewarmSessionsPerConnection int           `yaml:"prewarm_sessions_per_connection"`
	CheckIdleAfter               time.Duration `yaml:"check_idle_after"`
	LimitRecoveryInterval        time.Duration `yaml:"limit_recovery_interval"`
}

// Transfer is the transfer: section.
type Transfer struct {
	TransferTimeoutSeconds int           `yaml:"transfer_timeout_seconds"`
	ConnectTimeoutSeconds  int           `yaml:"connect_timeout_seconds"`
	IdleTimeout            time.Duration `yaml:"idle_timeout"`
	MinRateBytesPerSecond  int64         `yaml:"min_rate_bytes_per_second"`
	BufferSize             int           `yaml:"buffer_size"`
	Fsync                  bool          `yaml:"fsync"`
}

// Retry is the retry: section.
type Retry struct {
	MaxAttempts int           `yaml:"max_attempts"`
	BaseBackoff time.Duration `yaml:"base_backoff"`
	MaxBackoff  time.Duration `yaml:"max_backoff"`
	MaxOutage   time.Duration `yaml:"max_outage"`
}

// Lease is the lease: section.
type Lease struct {
	TTL                 time.Duration `yaml:"ttl"`
	HeartbeatInterval   time.Duration `yaml:"heartbeat_interval"`
	CommitTimeout       time.Duration `yaml:"commit_timeout"`
	LeasesPerConnection int           `yaml:"leases_per_connection"`
	ConnectionWait      time.Duration `yaml:"connection_wait"`
}

// CircuitBreaker is the circuit_breaker: section.
type CircuitBreaker struct {
	FailureThreshold int `yaml:"failure_threshold"`
	SuccessThreshold int `yaml:"success_threshold"`
	TimeoutSeconds   int `yaml:"timeout_seconds"`
	HalfOpenMaxCalls int `yaml:"half_open_max_calls"`
}

// API is the api: section.
type API struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
}

// Metrics is the metrics: section.
type Metrics struct {
	Port  int  `yaml:"port"`
	Pprof bool `yaml:"pprof"`
}

// Logging is the logging: section.
type Logging struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Dispatcher is the dispatcher: section.
type Dispatcher struct {
	Listen       string        `yaml:"listen"`
	AdminListen  string        `yaml:"admin_listen"`
	HTTPListen   string        `yaml:"http_listen"`
	InstanceID   string        `yaml:"instance_id"`
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	Shutdown     Shutdown      `yaml:"shutdown"`
	TLS          TLSFiles      `yaml:"tls"`
	Admin        Admin         `yaml:"admin"`
}

// Shutdown is dispatcher.shutdown: the bounds of the steps after the drain.
type Shutdown struct {
	FinalFlushTimeout time.Duration `yaml:"final_flush_timeout"`
	// ProducerFlushTimeout is in whole milliseconds.
	ProducerFlushTimeout   time.Duration `yaml:"producer_flush_timeout"`
	LeaseServerStopTimeout time.Duration `yaml:"lease_server_stop_timeout"`
	AdminServerStopTimeout time.Duration `yaml:"admin_server_stop_timeout"`
}

// Telemetry is the telemetry: section.
type Telemetry struct {
	FlushTimeout time.Duration `yaml:"flush_timeout"`
}

// TLSFiles are the PEM files of a tls: section.
type TLSFiles struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	CAFile       string `yaml:"ca_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	ServerName   string `yaml:"server_name"`
}

// Admin is dispatcher.admin.
type Admin struct {
	TokenFile string   `yaml:"token_file"`
	TLS       TLSFiles `yaml:"tls"`
}

// Agent is the agent: section.
type Agent struct {
	Dispatchers         []string      `yaml:"dispatchers"`
	Slots               int           `yaml:"slots"`
	HTTPListen          string        `yaml:"http_listen"`
	AgentID             string        `yaml:"agent_id"`
	DrainTimeout        time.Duration `yaml:"drain_timeout"`
	ReconnectMaxBackoff time.Duration `yaml:"reconnect_max_backoff"`
	TLS                 TLSFiles      `yaml:"tls"`
}

// Default is what the services use for every key a file leaves out.
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
			Delivery:                "exactly_once",
			CommitInterval:          20 * time.Millisecond,
			BatchMaxOutcomes:        1000,
			MaxBufferedTasks:        20000,
			CommittedOffsetsTimeout: 15 * time.Second,
		},
		Pool: Pool{
			MaxSessionsPerPod:            100,
			MaxSessionsPerConnection:     10,
			SessionTimeoutSeconds:        300,
			PrewarmSessionsPerConnection: 1,
			CheckIdleAfter:               15 * time.Second,
			LimitRecoveryInterval:        time.Minute,
		},
		Transfer: Transfer{
			TransferTimeoutSeconds: 300,
			ConnectTimeoutSeconds:  10,
			IdleTimeout:            60 * time.Second,
			MinRateBytesPerSecond:  1 << 20,
			BufferSize:             1 << 20,
			Fsync:                  true,
		},
		Retry: Retry{
			MaxAttempts: 4,
			BaseBackoff: 500 * time.Millisecond,
			MaxBackoff:  30 * time.Second,
			MaxOutage:   10 * time.Minute,
		},
		Lease: Lease{
			TTL:                 30 * time.Second,
			HeartbeatInterval:   5 * time.Second,
			CommitTimeout:       10 * time.Second,
			LeasesPerConnection: 2,
			ConnectionWait:      time.Second,
		},
		CircuitBreaker: CircuitBreaker{FailureThreshold: 5, SuccessThreshold: 2, TimeoutSeconds: 30, HalfOpenMaxCalls: 1},
		API:            API{Host: "0.0.0.0", Port: 8080},
		Metrics:        Metrics{Port: 9090},
		Logging:        Logging{Level: "INFO", Format: "json"},
		Dispatcher: Dispatcher{Listen: ":7070", AdminListen: ":7071", DrainTimeout: 30 * time.Second,
			Shutdown: Shutdown{FinalFlushTimeout: 30 * time.Second, ProducerFlushTimeout: 5 * time.Second,
				LeaseServerStopTimeout: 5 * time.Second, AdminServerStopTimeout: 2 * time.Second}},
		Agent:     Agent{Slots: 16, DrainTimeout: 60 * time.Second, ReconnectMaxBackoff: 10 * time.Second},
		Telemetry: Telemetry{FlushTimeout: 5 * time.Second},
	}
}

// YAML is config.yaml holding the keys whose values differ from Default,
// in the order of the fields: a short file that says what the suite chose.
func (c Config) YAML() ([]byte, error) {
	return marshal(c, false)
}

// marshal writes every key, or with all false only those that differ from
// Default.
func marshal(c Config, all bool) ([]byte, error) {
	n, err := yamlNode(reflect.ValueOf(c), reflect.ValueOf(Default()), all)
	if err != nil {
		return nil, err
	}
	if n == nil {
		n = &yaml.Node{Kind: yaml.MappingNode}
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var durationType = reflect.TypeFor[time.Duration]()

// yamlNode is v as YAML, or nil when v equals def and all is false.
func yamlNode(v, def reflect.Value, all bool) (*yaml.Node, error) {
	if !all && reflect.DeepEqual(v.Interface(), def.Interface()) {
		return nil, nil
	}
	if (v.Kind() == reflect.Slice || v.Kind() == reflect.Map) && v.IsNil() {
		return nil, nil // "[]" would load as an empty list, not the nil a missing key leaves
	}
	if v.Type() == durationType {
		// "30s", as the loader parses it; yaml would write nanoseconds.
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: time.Duration(v.Int()).String()}, nil
	}
	if v.Kind() != reflect.Struct {
		var n yaml.Node
		if err := n.Encode(v.Interface()); err != nil {
			return nil, err
		}
		return &n, nil
	}
	m := &yaml.Node{Kind: yaml.MappingNode}
	for i := range v.NumField() {
		child, err := yamlNode(v.Field(i), def.Field(i), all)
		if err != nil {
			return nil, err
		}
		if child != nil {
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key(v.Type().Field(i))}, child)
		}
	}
	return m, nil
}

func key(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// Write writes the file at path, comment as its first line.
func (c Config) Write(path, comment string) error {
	b, err := c.YAML()
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte("# "+comment+"\n"), b...), 0o644)
}

// Set sets the key named by a dotted path (lease.leases_per_connection,
// dispatcher.admin.token_file) to value read as the key's type: a
// duration such as 250ms, a number, true or false, a comma-separated
// list. Below kafka.client the rest of the path is the librdkafka
// property (kafka.client.linger.ms); kafka.client itself takes a YAML or
// JSON mapping.
func (c *Config) Set(path, value string) error {
	v := reflect.ValueOf(c).Elem()
	parts := strings.Split(path, ".")
	for i, p := range parts {
		f, ok := fieldByKey(v, p)
		if !ok {
			return fmt.Errorf("%s: config.yaml has no key %s", path, strings.Join(parts[:i+1], "."))
		}
		v = f
		if v.Kind() == reflect.Map && i < len(parts)-1 {
			if v.IsNil() {
				v.Set(reflect.MakeMap(v.Type()))
			}
			v.SetMapIndex(reflect.ValueOf(strings.Join(parts[i+1:], ".")), reflect.ValueOf(value))
			return nil
		}
		if v.Kind() != reflect.Struct {
			if i < len(parts)-1 {
				return fmt.Errorf("%s: %s is a key, not a section", path, strings.Join(parts[:i+1], "."))
			}
			break
		}
	}
	switch {
	case v.Kind() == reflect.Struct:
		return fmt.Errorf("%s is a section: name one of its keys", path)
	case v.Type() == durationType:
		d, err := time.ParseDuration(value)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration (250ms, 30s, 5m)", path, value)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(value)
	case v.Kind() == reflect.Slice:
		var list []string
		for _, s := range strings.Split(value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		v.Set(reflect.ValueOf(list))
	default:
		fresh := reflect.New(v.Type())
		if err := yaml.Unmarshal([]byte(value), fresh.Interface()); err != nil {
			return fmt.Errorf("%s: %q is not a %s", path, value, v.Type())
		}
		v.Set(fresh.Elem())
	}
	return nil
}

func fieldByKey(v reflect.Value, name string) (reflect.Value, bool) {
	if v.Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	for i := range v.NumField() {
		if key(v.Type().Field(i)) == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}
