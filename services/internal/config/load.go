package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Environment variables read by ApplyEnv and the binaries.
const (
	EnvConfig           = "FTP_POOLER_CONFIG"
	EnvConnections      = "FTP_POOLER_CONNECTIONS"
	EnvBootstrapServers = "FTP_POOLER_KAFKA_BOOTSTRAP_SERVERS"
	EnvInstanceID       = "FTP_POOLER_INSTANCE_ID"
	EnvAgentID          = "FTP_POOLER_AGENT_ID"
	EnvDispatchers      = "FTP_POOLER_DISPATCHERS"
	EnvLogLevel         = "FTP_POOLER_LOG_LEVEL"
	EnvAdminToken       = "FTP_POOLER_ADMIN_TOKEN"
)

// EnvHelp lists the environment variables a role reads, for --help.
func EnvHelp(role Role) string {
	vars := []string{EnvConfig + "  config.yaml path (--config)", EnvConnections + "  connections.ini path (--connections)", EnvLogLevel + "  logging.level"}
	if role == RoleDispatcher {
		vars = append(vars, EnvBootstrapServers+"  kafka.bootstrap_servers", EnvInstanceID+"  dispatcher.instance_id (--instance-id)",
			EnvAdminToken+"  bearer token required by the admin API")
	} else {
		vars = append(vars, EnvDispatchers+"  agent.dispatchers (--dispatcher)", EnvAgentID+"  agent.agent_id (--agent-id)")
	}
	return "\nEnvironment:\n  " + strings.Join(vars, "\n  ") + "\n  OTEL_*  OpenTelemetry exporter settings (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_EXPORTER, ...)\n" +
		"  pass_env keys of connections.ini name further variables holding FTP passwords"
}

// LoadFile overlays the YAML file at path onto Default(). Unknown keys are
// errors: a misspelt key silently ignored is a production incident waiting
// to happen, and every key of the original service is known.
func LoadFile(path string) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config file: %w", err)
	}
	if err := decodeYAML(data, &cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	cfg.Path = path
	return cfg, nil
}

func decodeYAML(data []byte, cfg *Config) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return err
	}
	if len(root.Content) == 0 {
		return nil // An empty file means all defaults, as for the original.
	}
	dropNulls(&root)
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: the file must be a mapping of sections (kafka:, pool:, ...)", doc.Line)
	}
	if err := checkKnown(doc, reflect.TypeOf(*cfg), ""); err != nil {
		return err
	}
	if err := doc.Decode(cfg); err != nil {
		return nameKeys(err, doc)
	}
	return nil
}

// checkKnown reports the first mapping key that no yaml tag of t names.
// yaml.v3 can do this only through a Decoder, which loses the node tree we
// need for line-accurate messages.
func checkKnown(n *yaml.Node, t reflect.Type, prefix string) error {
	if n.Kind != yaml.MappingNode || t.Kind() != reflect.Struct {
		return nil
	}
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			fields[name] = f.Type
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		ft, ok := fields[key]
		if !ok {
			return fmt.Errorf("line %d: unknown key %q", n.Content[i].Line, prefix+key)
		}
		if err := checkKnown(n.Content[i+1], ft, prefix+key+"."); err != nil {
			return err
		}
	}
	return nil
}

// nameKeys adds the dotted key to yaml's "line N: cannot unmarshal" errors.
func nameKeys(err error, doc *yaml.Node) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	byLine := map[int]string{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := prefix + n.Content[i].Value
			byLine[n.Content[i+1].Line] = key
			walk(n.Content[i+1], key+".")
		}
	}
	walk(doc, "")
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		var line int
		if _, scanErr := fmt.Sscanf(m, "line %d:", &line); scanErr == nil && byLine[line] != "" {
			m = strings.Replace(m, ":", " ("+byLine[line]+"):", 1)
		}
		msgs = append(msgs, m)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// dropNulls removes "key:" entries with no value, so an empty section keeps
// its defaults instead of being zeroed.
func dropNulls(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			v := n.Content[i+1]
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue
			}
			kept = append(kept, n.Content[i], v)
		}
		n.Content = kept
	}
	for _, c := range n.Content {
		dropNulls(c)
	}
}

// ApplyEnv overlays the environment variables that override file keys.
func (c *Config) ApplyEnv(getenv func(string) string) {
	if v := getenv(EnvBootstrapServers); v != "" {
		c.Kafka.BootstrapServers = splitList(v)
	}
	if v := getenv(EnvInstanceID); v != "" {
		c.Dispatcher.InstanceID = v
	}
	if v := getenv(EnvAgentID); v != "" {
		c.Agent.AgentID = v
	}
	if v := getenv(EnvDispatchers); v != "" {
		c.Agent.Dispatchers = splitList(v)
	}
	if v := getenv(EnvLogLevel); v != "" {
		c.Logging.Level = v
	}
}

// StringList is a YAML list of strings that also accepts one
// comma-separated string (the original accepted only the list).
type StringList []string

// UnmarshalYAML accepts a sequence or a comma-separated scalar.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = splitList(n.Value)
		return nil
	case yaml.SequenceNode:
		var items []string
		if err := n.Decode(&items); err != nil {
			return err
		}
		var out []string
		for _, it := range items {
			out = append(out, splitList(it)...)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("line %d: want a list or a comma-separated string", n.Line)
}

// Set implements flag.Value, so a flag can replace the list.
func (l *StringList) Set(s string) error {
	*l = splitList(s)
	return nil
}

func (l *StringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Duration is a time.Duration written as "30s" or "250ms" in YAML.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML parses a Go duration string. Its errors are yaml's
// TypeError so that nameKeys adds the key to the line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a duration such as \"30s\"", n.Line)}}
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration (examples: 250ms, 30s, 5m)", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration string, so encoded configs read back.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ParseLevel reads a logging level; WARNING is accepted as Python spells it.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "DEBUG":
		return slog.LevelDebug, nil
	case "INFO", "":
		return slog.LevelInfo, nil
	case "WARN", "WARNING":
		return slog.LevelWarn, nil
	case "ERROR", "CRITICAL":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown level %q (want DEBUG, INFO, WARNING or ERROR)", s)
}

func sortStrings(s []string) { slices.Sort(s) }
