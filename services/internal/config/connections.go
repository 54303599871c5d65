package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EndpointType says how an endpoint is reached.
type EndpointType string

// The endpoint types of connections.ini (case-insensitive there).
const (
	TypeFTP   EndpointType = "ftp"
	TypeSFTP  EndpointType = "sftp"
	TypeLocal EndpointType = "local"
)

// TLSMode says whether and how an FTP endpoint uses TLS.
type TLSMode string

// The FTPS modes.
const (
	TLSNone     TLSMode = "none"
	TLSExplicit TLSMode = "explicit" // AUTH TLS on the plain port
	TLSImplicit TLSMode = "implicit" // TLS from the first byte
)

// Encoding is the character set of an FTP endpoint's file names.
type Encoding string

// The name encodings.
const (
	EncodingUTF8   Encoding = "utf-8"
	EncodingLatin1 Encoding = "latin-1"
)

// Endpoint is one section of connections.ini.
type Endpoint struct {
	ID   string
	Type EndpointType

	// FTP endpoints.
	Host     string
	Port     int
	User     string
	Password Secret
	// Active is passive = false: active mode (PORT/EPRT), the server
	// connects to the agent for each transfer, for servers that refuse PASV
	// and EPSV. (Inverted so that the zero Endpoint is passive, the default.)
	Active bool
	// TrustPASVAddress dials the address a PASV reply names; by default the
	// control connection's host is dialled with the reply's port, as lftp
	// and rclone do, because servers behind NAT name private addresses.
	TrustPASVAddress bool
	// DisableEPSV goes straight to PASV (IPv4 only) for servers or
	// firewalls that accept EPSV but then do not let the data through.
	DisableEPSV bool
	// Encoding is how file names are sent: EncodingUTF8, or EncodingLatin1
	// for servers without UTF-8 whose names are ISO-8859-1 bytes.
	Encoding Encoding
	// Timeout bounds connect and login; zero means transfer.connect_timeout_seconds.
	Timeout time.Duration
	TLS     TLSMode
	// TLSServerName overrides the name checked in the server's certificate.
	TLSServerName string
	// TLSCAFile is a PEM bundle to trust instead of the system roots.
	TLSCAFile string
	// TLSInsecureSkipVerify accepts any server certificate (test servers only).
	TLSInsecureSkipVerify bool
	// TLSMaxVersion caps the TLS version: "1.2" (the default) or "1.3".
	// vsftpd 3.0.x, the most common Linux FTP server, cuts uploads over TLS
	// 1.3 short ("426 Failure reading network stream"), so 1.2 is the default.
	TLSMaxVersion string
	// MaxConnections caps logged-in connections to this endpoint (for SFTP,
	// SSH connections); zero means pool.max_sessions_per_connection.
	MaxConnections int

	// SFTP endpoints (Host, Port, User, Password, Timeout and
	// MaxConnections too).
	SFTP SFTPOptions

	// Local endpoints.
	BasePath string
}

// IsRemote reports whether the endpoint is a server reached over the
// network (FTP or SFTP): it has connections, a limit and a breaker.
func (e *Endpoint) IsRemote() bool { return e.Type == TypeFTP || e.Type == TypeSFTP }

// Address is host:port of an FTP or SFTP endpoint.
func (e *Endpoint) Address() string {
	return net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
}

// Connections is a parsed connections.ini.
type Connections struct {
	// Path is the file the endpoints came from.
	Path      string
	Endpoints map[string]*Endpoint
	// Warnings are problems that do not stop start-up (unknown keys,
	// passive = false); callers log them.
	Warnings []string
}

// Endpoint returns the endpoint with the given id.
func (c *Connections) Endpoint(id string) (*Endpoint, bool) {
	e, ok := c.Endpoints[id]
	return e, ok
}

// IDs returns the endpoint ids, sorted.
func (c *Connections) IDs() []string {
	ids := make([]string, 0, len(c.Endpoints))
	for id := range c.Endpoints {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// endpointKind is how one endpoint type of connections.ini is read.
type endpointKind struct {
	// keys are the keys beyond "type" this type reads; a key no type reads
	// is warned about and ignored.
	keys []string
	// parse reads the keys into ep, whose ID and Type are set.
	parse func(s *endpointSection, ep *Endpoint) error
}

// serverKeys are read by every endpoint type that logs in to a server.
var serverKeys = []string{"host", "port", "user", "pass", "password", "pass_file", "pass_env", "timeout", "max_connections"}

// endpointKinds are the endpoint types; a new type is one more entry.
var endpointKinds = map[EndpointType]endpointKind{
	TypeFTP: {
		keys: append(slices.Clone(serverKeys), "passive", "trust_pasv_address", "disable_epsv", "encoding",
			"tls", "tls_server_name", "tls_ca_file", "tls_insecure_skip_verify", "tls_max_version"),
		parse: parseFTP,
	},
	TypeSFTP:  {keys: append(slices.Clone(serverKeys), sftpKeys...), parse: parseSFTP},
	TypeLocal: {keys: []string{"base_path"}, parse: parseLocal},
}

// knownEndpointKeys are the keys some endpoint type reads. Unknown means
// unknown to every type, not to the section's own: a DEFAULT section's
// keys reach endpoints of every type.
var knownEndpointKeys = func() map[string]bool {
	known := map[string]bool{"type": true}
	for _, kind := range endpointKinds {
		for _, k := range kind.keys {
			known[k] = true
		}
	}
	return known
}()

// endpointTypeNames lists the endpoint types for messages: "ftp, local or sftp".
func endpointTypeNames() string {
	names := make([]string, 0, len(endpointKinds))
	for t := range endpointKinds {
		names = append(names, string(t))
	}
	slices.Sort(names)
	last := len(names) - 1
	if last == 0 {
		return names[0]
	}
	return strings.Join(names[:last], ", ") + " or " + names[last]
}

// LoadConnections reads and validates a connections.ini file. getenv
// resolves pass_env; pass it os.Getenv.
func LoadConnections(path string, getenv func(string) string) (*Connections, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("connections file: %w", err)
	}
	conns, err := ParseConnections(data, filepath.Dir(path), getenv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	conns.Path = path
	return conns, nil
}

// ParseConnections parses connections.ini content. Relative pass_file and
// tls_ca_file paths are taken relative to dir.
func ParseConnections(data []byte, dir string, getenv func(string) string) (*Connections, error) {
	sections, err := parseINI(data)
	if err != nil {
		return nil, err
	}
	conns := &Connections{Endpoints: map[string]*Endpoint{}}
	var defaults map[string]iniValue
	for _, s := range sections {
		if s.name == "DEFAULT" {
			defaults = s.keys
		}
	}
	for _, s := range sections {
		if s.name == "DEFAULT" {
			continue
		}
		keys := make(map[string]iniValue, len(s.keys)+len(defaults))
		for k, v := range defaults {
			keys[k] = v
		}
		for k, v := range s.keys {
			keys[k] = v
		}
		ep, warnings, err := parseEndpoint(&endpointSection{id: s.name, keys: keys, dir: dir, getenv: getenv})
		if err != nil {
			return nil, err
		}
		conns.Warnings = append(conns.Warnings, warnings...)
		conns.Endpoints[ep.ID] = ep
	}
	if len(conns.Endpoints) == 0 {
		return nil, fmt.Errorf("no endpoints defined: add a [section] per endpoint with type = ftp, sftp or local")
	}
	return conns, nil
}

// endpointSection is one endpoint's keys (its section's over DEFAULT's)
// and what reading them needs. Its errors name the section, the key and
// the key's line.
type endpointSection struct {
	id     string
	keys   map[string]iniValue
	dir    string
	getenv func(string) string
}

func (s *endpointSection) bad(key, format string, args ...any) error {
	return fmt.Errorf("[%s] key %q (line %d): %s", s.id, key, s.keys[key].line, fmt.Sprintf(format, args...))
}

func (s *endpointSection) missing(key, why string) error {
	return fmt.Errorf("[%s]: missing required key %q %s", s.id, key, why)
}

// boolKey sets *dst from key when the section has it.
func (s *endpointSection) boolKey(key string, dst *bool) error {
	v, ok := s.keys[key]
	if !ok {
		return nil
	}
	b, err := parseBool(v.value)
	if err != nil {
		return s.bad(key, "%v", err)
	}
	*dst = b
	return nil
}

// unknownKeys are the warnings for keys no endpoint type reads.
func (s *endpointSection) unknownKeys() []string {
	var warnings []string
	for _, k := range sortedKeys(s.keys) {
		if !knownEndpointKeys[k] {
			warnings = append(warnings, fmt.Sprintf("[%s] line %d: unknown key %q ignored", s.id, s.keys[k].line, k))
		}
	}
	return warnings
}

// parseEndpoint reads the type and hands the section to that type's parser.
func parseEndpoint(s *endpointSection) (*Endpoint, []string, error) {
	warnings := s.unknownKeys()
	typ, ok := s.keys["type"]
	if !ok {
		return nil, nil, s.missing("type", "("+endpointTypeNames()+")")
	}
	ep := &Endpoint{ID: s.id, Type: EndpointType(strings.ToLower(strings.TrimSpace(typ.value)))}
	kind, ok := endpointKinds[ep.Type]
	if !ok {
		return nil, nil, s.bad("type", "unknown endpoint type %q (want %s)", typ.value, endpointTypeNames())
	}
	if err := kind.parse(s, ep); err != nil {
		return nil, nil, err
	}
	if ep.SFTP.InsecureIgnoreHostKey {
		warnings = append(warnings, fmt.Sprintf("[%s]: insecure_ignore_host_key = true: the server's identity is not checked, so anyone on the network path can pose as it and read the files and password", s.id))
	}
	return ep, warnings, nil
}

func parseLocal(s *endpointSection, ep *Endpoint) error {
	v, ok := s.keys["base_path"]
	if !ok || v.value == "" {
		return s.missing("base_path", "for a local endpoint")
	}
	if !filepath.IsAbs(v.value) {
		return s.bad("base_path", "must be an absolute path, got %q", v.value)
	}
	ep.BasePath = filepath.Clean(v.value)
	return nil
}

func parseFTP(s *endpointSection, ep *Endpoint) error {
	if err := parseServer(s, ep, 21); err != nil {
		return err
	}
	if err := parseFTPDataConnections(s, ep); err != nil {
		return err
	}
	if err := parseFTPTLS(s, ep); err != nil {
		return err
	}
	if ep.Active && ep.TLS != TLSNone {
		// Active mode rewrites PASV into PORT on the control channel, which
		// TLS encrypts end to end.
		return s.bad("passive", "passive = false (active mode) works only without TLS; this endpoint has tls = %s", ep.TLS)
	}
	return nil
}

// parseServer reads serverKeys: where the server is, how to log in, and
// how long and how often to connect.
func parseServer(s *endpointSection, ep *Endpoint, defaultPort int) error {
	host, ok := s.keys["host"]
	if !ok || strings.TrimSpace(host.value) == "" {
		return s.missing("host", fmt.Sprintf("for an %s endpoint", ep.Type))
	}
	ep.Host = strings.TrimSpace(host.value)
	ep.Port = defaultPort
	if v, ok := s.keys["port"]; ok {
		p, err := strconv.Atoi(strings.TrimSpace(v.value))
		if err != nil || p < 1 || p > 65535 {
			return s.bad("port", "must be a port number 1-65535, got %q", v.value)
		}
		ep.Port = p
	}
	ep.User = "anonymous"
	if v, ok := s.keys["user"]; ok {
		ep.User = v.value
	}
	pw, err := s.password()
	if err != nil {
		return err
	}
	ep.Password = pw
	if v, ok := s.keys["timeout"]; ok {
		secs, err := strconv.ParseFloat(strings.TrimSpace(v.value), 64)
		if err != nil || secs <= 0 {
			return s.bad("timeout", "must be a positive number of seconds, got %q", v.value)
		}
		ep.Timeout = time.Duration(secs * float64(time.Second))
	}
	if v, ok := s.keys["max_connections"]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v.value))
		if err != nil || n < 1 {
			return s.bad("max_connections", "must be a positive integer, got %q", v.value)
		}
		ep.MaxConnections = n
	}
	return nil
}

// parseFTPDataConnections reads how data connections are opened and how
// the names sent over the control connection are encoded.
func parseFTPDataConnections(s *endpointSection, ep *Endpoint) error {
	passive := true
	if err := s.boolKey("passive", &passive); err != nil {
		return err
	}
	ep.Active = !passive
	if err := s.boolKey("trust_pasv_address", &ep.TrustPASVAddress); err != nil {
		return err
	}
	if err := s.boolKey("disable_epsv", &ep.DisableEPSV); err != nil {
		return err
	}
	ep.Encoding = EncodingUTF8
	if v, ok := s.keys["encoding"]; ok {
		switch strings.ToLower(strings.TrimSpace(v.value)) {
		case "utf-8", "utf8":
		case "latin-1", "latin1", "iso-8859-1", "iso8859-1":
			ep.Encoding = EncodingLatin1
		default:
			return s.bad("encoding", "must be utf-8 or latin-1 (ISO-8859-1), got %q", v.value)
		}
	}
	return nil
}

// parseFTPTLS reads the FTPS mode and how the server's certificate is checked.
func parseFTPTLS(s *endpointSection, ep *Endpoint) error {
	ep.TLS = TLSNone
	if v, ok := s.keys["tls"]; ok {
		switch mode := TLSMode(strings.ToLower(strings.TrimSpace(v.value))); mode {
		case TLSNone, TLSExplicit, TLSImplicit:
			ep.TLS = mode
		default:
			return s.bad("tls", "must be none, explicit or implicit, got %q", v.value)
		}
	}
	if v, ok := s.keys["tls_server_name"]; ok {
		ep.TLSServerName = strings.TrimSpace(v.value)
	}
	if v, ok := s.keys["tls_ca_file"]; ok {
		ep.TLSCAFile = resolveRelative(s.dir, strings.TrimSpace(v.value))
	}
	if err := s.boolKey("tls_insecure_skip_verify", &ep.TLSInsecureSkipVerify); err != nil {
		return err
	}
	ep.TLSMaxVersion = "1.2"
	if v, ok := s.keys["tls_max_version"]; ok {
		switch mv := strings.TrimSpace(v.value); mv {
		case "1.2", "1.3":
			ep.TLSMaxVersion = mv
		default:
			return s.bad("tls_max_version", "must be 1.2 or 1.3, got %q", v.value)
		}
	}
	return nil
}

// password reads pass, password, pass_file or pass_env; setting more than
// one is an error because it would be ambiguous which one is used.
func (s *endpointSection) password() (Secret, error) {
	var set []string
	for _, k := range []string{"pass", "password", "pass_file", "pass_env"} {
		if _, ok := s.keys[k]; ok {
			set = append(set, k)
		}
	}
	switch {
	case len(set) == 0:
		// Anonymous FTP conventionally takes any password.
		return "anonymous", nil
	case len(set) > 1:
		return "", fmt.Errorf("[%s]: keys %s are alternatives; set only one", s.id, strings.Join(set, ", "))
	}
	v := s.keys[set[0]]
	switch set[0] {
	case "pass_file":
		p := resolveRelative(s.dir, strings.TrimSpace(v.value))
		data, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("[%s] key \"pass_file\" (line %d): %w", s.id, v.line, err)
		}
		return Secret(strings.TrimRight(string(data), "\r\n")), nil
	case "pass_env":
		name := strings.TrimSpace(v.value)
		val := s.getenv(name)
		if val == "" {
			return "", fmt.Errorf("[%s] key \"pass_env\" (line %d): environment variable %s is empty or unset", s.id, v.line, name)
		}
		return Secret(val), nil
	default:
		return Secret(v.value), nil
	}
}

func resolveRelative(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// parseBool accepts configparser's boolean spellings.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "yes", "true", "on":
		return true, nil
	case "0", "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("must be a boolean (true/false, yes/no, on/off, 1/0), got %q", s)
}

func sortedKeys(m map[string]iniValue) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
