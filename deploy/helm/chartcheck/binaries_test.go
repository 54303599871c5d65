package chartcheck

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// cli is what a binary's --help says it accepts.
type cli struct {
	// flags maps a flag name to whether it takes a value.
	flags map[string]bool
	// env are the FTP_POOLER_* variables it reads.
	env map[string]bool
	// otel: it reads OTEL_* variables.
	otel bool
}

var (
	helpFlag = regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)(?: (\S+))?$`)
	helpEnv  = regexp.MustCompile(`(?m)^  (FTP_POOLER_[A-Z0-9_]+)\s`)
	cliMu    sync.Mutex
	cliCache = map[string]*cli{}
)

// binaryCLI runs `<binary> --help` and parses its flags and environment.
func binaryCLI(t *testing.T, name string) *cli {
	t.Helper()
	cliMu.Lock()
	defer cliMu.Unlock()
	if c, ok := cliCache[name]; ok {
		return c
	}
	out, err := exec.Command(filepath.Join(binDir(t), name), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", name, err, out)
	}
	c := &cli{flags: map[string]bool{}, env: map[string]bool{}, otel: bytes.Contains(out, []byte("OTEL_*"))}
	for _, m := range helpFlag.FindAllStringSubmatch(string(out), -1) {
		c.flags[m[1]] = m[2] != ""
	}
	for _, m := range helpEnv.FindAllStringSubmatch(string(out), -1) {
		c.env[m[1]] = true
	}
	for _, want := range []string{"config", "connections", "check-config", "http-listen"} {
		if _, ok := c.flags[want]; !ok {
			t.Fatalf("%s --help lists no -%s: the help format changed; update helpFlag\n%s", name, want, out)
		}
	}
	if len(c.env) == 0 {
		t.Fatalf("%s --help lists no FTP_POOLER_* variables: the help format changed; update helpEnv\n%s", name, out)
	}
	cliCache[name] = c
	return c
}

// roleOf says which binary a container runs, from its image's name.
func roleOf(c *corev1.Container) string {
	ref := c.Image
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	base := path.Base(ref)
	if i := strings.Index(base, ":"); i >= 0 {
		base = base[:i]
	}
	switch base {
	case "dispatcher", "agent":
		return base
	}
	return ""
}

// parseArgs splits --name=value arguments; the chart always uses that form.
func parseArgs(args []string) (map[string]string, []error) {
	out := map[string]string{}
	var errs []error
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			errs = append(errs, fmt.Errorf("argument %q is not a flag (the binaries take no positional arguments)", a))
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if _, dup := out[name]; dup {
			errs = append(errs, fmt.Errorf("flag --%s given twice", name))
		}
		if !hasValue {
			value = "\x00" // a bare boolean flag
		}
		out[name] = value
	}
	return out, errs
}

func listenPort(addr string) (int32, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(p, 10, 32)
	return int32(n), err
}

func containerPort(c *corev1.Container, name string) (int32, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// TestFlagsEnvAndPortsMatchTheBinaries checks every FTP Pooler container
// against its binary's --help: each flag exists (with a value when it takes
// one), each FTP_POOLER_* variable is one the binary reads, any other
// variable is read by something (OTEL_*, a pass_env of connections.ini);
// container ports are the ones the listen flags bind; probes hit those
// ports on paths the binaries serve; the agents' --dispatcher list names
// every dispatcher replica through the headless Service on the lease port.
func TestFlagsEnvAndPortsMatchTheBinaries(t *testing.T) {
	forEachScenario(t, func(t *testing.T, r *rendered) {
		existing := existingSecrets(t, r)
		var sts *appsv1.StatefulSet
		for _, s := range objects[*appsv1.StatefulSet](r) {
			sts = s
		}
		if sts == nil {
			t.Fatal("no dispatcher StatefulSet")
		}
		leasePort := int32(-1)
		for _, c := range sts.Spec.Template.Spec.Containers {
			if roleOf(&c) == "dispatcher" {
				flags, _ := parseArgs(c.Args)
				leasePort, _ = listenPort(flags["listen"])
			}
		}
		roles := map[string]int{}
		for _, w := range workloads(r) {
			for _, c := range allContainers(w.spec) {
				role := roleOf(&c)
				if role == "" {
					if !w.test {
						t.Errorf("%s: container %s runs image %s, neither dispatcher nor agent", w.owner, c.Name, c.Image)
					}
					continue
				}
				roles[role]++
				what := w.owner + " container " + c.Name
				help := binaryCLI(t, role)
				if len(c.Command) > 0 {
					t.Errorf("%s: command overrides the image's entrypoint: %v", what, c.Command)
				}
				flags, errs := parseArgs(c.Args)
				for _, e := range errs {
					t.Errorf("%s: %v", what, e)
				}
				for name, value := range flags {
					takesValue, ok := help.flags[name]
					switch {
					case !ok:
						t.Errorf("%s: flag --%s is not a flag of %s", what, name, role)
					case takesValue && value == "\x00":
						t.Errorf("%s: flag --%s needs a value (--%s=...)", what, name, name)
					case !takesValue && value != "\x00" && value != "true" && value != "false":
						t.Errorf("%s: boolean flag --%s given value %q", what, name, value)
					}
				}
				_, checking := flags["check-config"]
				if w.test != checking {
					t.Errorf("%s: --check-config must be set in the helm test pods and only there", what)
				}
				for _, need := range []string{"config", "connections"} {
					if !path.IsAbs(flags[need]) {
						t.Errorf("%s: --%s=%q, want an absolute path", what, need, flags[need])
					}
				}
				// Environment.
				ini := connectionsIni(t, r, existing, w.spec, &c)
				passEnvs := parseIniRefs(ini).passEnvs
				for _, e := range c.Env {
					switch {
					case strings.HasPrefix(e.Name, "FTP_POOLER_"):
						if !help.env[e.Name] {
							t.Errorf("%s: env %s is not read by %s (it reads %v)", what, e.Name, role, keys(help.env))
						}
					case strings.HasPrefix(e.Name, "OTEL_"):
						if !help.otel {
							t.Errorf("%s: env %s: %s reads no OTEL_* variables", what, e.Name, role)
						}
					case e.Name == "POD_NAME" || slices.Contains(passEnvs, e.Name):
					default:
						t.Errorf("%s: env %s is read by nothing (not FTP_POOLER_*, OTEL_*, nor a pass_env of connections.ini)", what, e.Name)
					}
				}
				for _, pe := range passEnvs {
					if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == pe }) {
						t.Errorf("%s: connections.ini names pass_env %s, which the container does not set", what, pe)
					}
				}
				if w.test {
					continue
				}
				idEnv := map[string]string{"dispatcher": "FTP_POOLER_INSTANCE_ID", "agent": "FTP_POOLER_AGENT_ID"}[role]
				if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
					return e.Name == idEnv && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
				}) {
					t.Errorf("%s: %s must be the pod name (downward API), unique and, for dispatchers, stable", what, idEnv)
				}
				checkPorts(t, what, role, flags, &c, r, sts, leasePort)
			}
		}
		if roles["dispatcher"] == 0 || roles["agent"] == 0 {
			t.Errorf("containers by binary: %v, want both", roles)
		}
	})
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func checkPorts(t *testing.T, what, role string, flags map[string]string, c *corev1.Container, r *rendered, sts *appsv1.StatefulSet, leasePort int32) {
	t.Helper()
	// Each listen flag binds a declared container port of the matching name.
	listens := map[string]string{"http-listen": "http"}
	if role == "dispatcher" {
		listens["listen"], listens["admin-listen"] = "lease", "admin"
	}
	ports := map[string]int32{}
	for flag, portName := range listens {
		addr, ok := flags[flag]
		if !ok {
			t.Errorf("%s: --%s not set: the port would not be the one the chart declares", what, flag)
			continue
		}
		n, err := listenPort(addr)
		if err != nil {
			t.Errorf("%s: --%s=%q: %v", what, flag, addr, err)
			continue
		}
		cp, ok := containerPort(c, portName)
		if !ok || cp != n {
			t.Errorf("%s: --%s binds %d but container port %q is %d", what, flag, n, portName, cp)
		}
		ports[portName] = n
	}
	if len(c.Ports) != len(listens) {
		t.Errorf("%s: %d container ports, the binary listens on %d", what, len(c.Ports), len(listens))
	}
	ps := probes(c)
	if ps["livenessProbe"] == nil || ps["readinessProbe"] == nil {
		t.Errorf("%s: liveness and readiness probes are required", what)
	}
	for kind, p := range ps {
		n, err := probePort(p, c)
		if err != nil {
			t.Errorf("%s: %s: %v", what, kind, err)
			continue
		}
		switch {
		case p.GRPC != nil:
			if role != "dispatcher" || n != ports["admin"] {
				t.Errorf("%s: %s: gRPC health is served on the dispatcher's admin port (%d), probe uses %d", what, kind, ports["admin"], n)
			}
			if p.GRPC.Service != nil && *p.GRPC.Service != "" {
				t.Errorf("%s: %s: the dispatcher reports health for the whole server (service \"\")", what, kind)
			}
		case p.HTTPGet != nil:
			if n != ports["http"] {
				t.Errorf("%s: %s: /healthz and /readyz are served on --http-listen (%d), probe uses %d", what, kind, ports["http"], n)
			}
			allowed := map[string][]string{
				"livenessProbe": {"/healthz", "/live"}, "startupProbe": {"/healthz", "/live"},
				"readinessProbe": {"/readyz", "/ready", "/healthz", "/live"},
			}[kind]
			if role == "agent" && kind == "readinessProbe" {
				allowed = []string{"/readyz", "/ready"} // ready = connected to a dispatcher
			}
			if !slices.Contains(allowed, p.HTTPGet.Path) {
				t.Errorf("%s: %s: path %q, want one of %v", what, kind, p.HTTPGet.Path, allowed)
			}
		default:
			t.Errorf("%s: %s: want a gRPC (dispatcher) or HTTP probe", what, kind)
		}
	}
	if role != "agent" {
		return
	}
	// The dispatcher list: every replica, by its stable DNS name, on the lease port.
	list := strings.Split(flags["dispatcher"], ",")
	replicas := int32(1)
	if sts.Spec.Replicas != nil {
		replicas = *sts.Spec.Replicas
	}
	if int32(len(list)) != replicas {
		t.Errorf("%s: --dispatcher lists %d dispatchers, the StatefulSet has %d", what, len(list), replicas)
	}
	svc, _ := find[*corev1.Service](r, sts.Spec.ServiceName)
	for i, addr := range list {
		want := fmt.Sprintf("%s-%d.%s.%s.svc:%d", sts.Name, i, sts.Spec.ServiceName, namespace, leasePort)
		if addr != want {
			t.Errorf("%s: --dispatcher entry %d is %q, want %q", what, i, addr, want)
		}
	}
	if svc != nil && !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == leasePort && p.TargetPort.StrVal == "lease" }) {
		t.Errorf("headless Service %s does not expose the lease port %d", svc.Name, leasePort)
	}
}

// connectionsIni returns the connections.ini c's --connections names, as mounted.
func connectionsIni(t *testing.T, r *rendered, existing map[string]map[string]string, spec *corev1.PodSpec, c *corev1.Container) string {
	t.Helper()
	fs, _ := materialize(t, r, existing, spec, c)
	flags, _ := parseArgs(c.Args)
	data, err := os.ReadFile(fs.host(flags["connections"]))
	if err != nil {
		t.Errorf("%s: --connections=%s is not mounted: %v", c.Name, flags["connections"], err)
	}
	return string(data)
}

// checkConfig lays out the files container c of w would see, rewrites the
// paths the configuration names to that layout, checks that every file the
// role reads is mounted, and runs `<binary> --check-config` with the
// container's arguments and environment. It returns the container's view
// and the parsed config.yaml.
func checkConfig(t *testing.T, r *rendered, w workload, c *corev1.Container) (map[string]any, error) {
	t.Helper()
	role := roleOf(c)
	existing := existingSecrets(t, r)
	fs, errs := materialize(t, r, existing, w.spec, c)
	podName := w.name
	switch w.kind {
	case "StatefulSet":
		podName += "-0"
	case "Deployment":
		podName += "-5d8f7c9b6d-x2x7q"
	}
	env, envErrs := containerEnv(r, existing, c, podName)
	errs = append(errs, envErrs...)
	flags, _ := parseArgs(c.Args)
	cfgPath, connPath := fs.host(flags["config"]), fs.host(flags["connections"])

	// config.yaml: file paths of the role's sections must be mounted.
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("--config=%s is not mounted: %w", flags["config"], err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("config.yaml is not YAML: %w", err)
	}
	sections := map[string][]string{"dispatcher": {"kafka", "dispatcher"}, "agent": {"agent"}}[role]
	var paths []string
	for _, s := range sections {
		walkStrings(cfg[s], s, func(key, v string) {
			if !strings.HasPrefix(v, "/") {
				return
			}
			if !fs.exists(v) {
				errs = append(errs, fmt.Errorf("config.yaml %s = %s: %w in the container", key, v, errNotMounted))
			}
			paths = append(paths, v)
		})
	}
	if err := rebase(fs, cfgPath, paths); err != nil {
		t.Fatal(err)
	}

	// connections.ini: passwords and SFTP keys, passphrases and known_hosts
	// files (both roles read them), FTPS CAs and local endpoints' storage
	// (agents).
	ini, err := os.ReadFile(connPath)
	if err != nil {
		return cfg, fmt.Errorf("--connections=%s is not mounted: %w", flags["connections"], err)
	}
	refs := parseIniRefs(string(ini))
	paths = nil
	files := append(append([]string(nil), refs.passFiles...), refs.sftpFiles...)
	if role == "agent" {
		files = append(files, refs.caFiles...)
	}
	for _, f := range files {
		if !path.IsAbs(f) {
			f = path.Join(path.Dir(flags["connections"]), f)
		}
		if !fs.exists(f) {
			errs = append(errs, fmt.Errorf("connections.ini names %s: %w in the container", f, errNotMounted))
		}
		paths = append(paths, f)
	}
	if role == "agent" && !w.test {
		for _, b := range refs.basePaths {
			if !fs.onDataVolume(path.Clean(b)) {
				errs = append(errs, fmt.Errorf("local endpoint base_path %s is on no persistentVolumeClaim or emptyDir mount (mounts: %v)", b, fs.dataDirs))
			} else if !fs.exists(b) {
				t.Logf("%s: base_path %s lies below a mount point: it must exist in the volume before agents start", w.owner, b)
			}
		}
	}
	if err := rebase(fs, connPath, paths); err != nil {
		t.Fatal(err)
	}
	if len(errs) > 0 {
		return cfg, joinErrs(errs)
	}

	// The binary itself.
	args := []string{}
	for _, a := range c.Args {
		if name, v, ok := strings.Cut(strings.TrimLeft(a, "-"), "="); ok && (name == "config" || name == "connections") {
			a = "--" + name + "=" + fs.host(v)
		}
		args = append(args, a)
	}
	if _, ok := flags["check-config"]; !ok {
		args = append(args, "--check-config")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir(t), role), args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return cfg, fmt.Errorf("%s --check-config: %v\n%s", role, err, out)
	}
	if !bytes.Contains(out, []byte("are valid")) {
		return cfg, fmt.Errorf("%s --check-config exited 0 without saying the files are valid:\n%s", role, out)
	}
	return cfg, nil
}

func walkStrings(v any, key string, f func(key, value string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			walkStrings(e, key+"."+k, f)
		}
	case []any:
		for i, e := range x {
			walkStrings(e, fmt.Sprintf("%s[%d]", key, i), f)
		}
	case string:
		f(key, x)
	}
}

func joinErrs(errs []error) error {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%s", strings.Join(msgs, "\n"))
}

// durationAt reads a duration key of config.yaml, or def when it is absent.
func durationAt(t *testing.T, cfg map[string]any, section, key string, def time.Duration) time.Duration {
	t.Helper()
	s, _ := cfg[section].(map[string]any)
	v, ok := s[key].(string)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Errorf("config.yaml %s.%s = %q: %v", section, key, v, err)
	}
	return d
}

// TestBinariesAcceptTheRenderedConfiguration runs --check-config of the real
// binaries on the files each FTP Pooler container mounts (config.yaml from
// its ConfigMap or Secret, connections.ini, password files, SFTP keys and
// known_hosts files, certificates):
// an unknown or invalid key anywhere in the chart's configuration fails
// here. It also checks each pod's grace period exceeds its drain timeout
// as that container's config.yaml sets it.
func TestBinariesAcceptTheRenderedConfiguration(t *testing.T) {
	forEachScenario(t, func(t *testing.T, r *rendered) {
		for _, w := range workloads(r) {
			for _, c := range w.spec.Containers {
				role := roleOf(&c)
				if role == "" {
					continue
				}
				cfg, err := checkConfig(t, r, w, &c)
				if err != nil {
					t.Errorf("%s container %s: %v", w.owner, c.Name, err)
					continue
				}
				if w.test {
					continue
				}
				drain := map[string]time.Duration{
					"dispatcher": durationAt(t, cfg, "dispatcher", "drain_timeout", 30*time.Second),
					"agent":      durationAt(t, cfg, "agent", "drain_timeout", 60*time.Second),
				}[role]
				grace := 30 * time.Second
				if w.spec.TerminationGracePeriodSeconds != nil {
					grace = time.Duration(*w.spec.TerminationGracePeriodSeconds) * time.Second
				}
				if grace <= drain {
					t.Errorf("%s: terminationGracePeriodSeconds %s does not exceed %s.drain_timeout %s: the kubelet would kill it mid-drain", w.owner, grace, role, drain)
				}
				if role == "dispatcher" && grace < drain+30*time.Second {
					t.Errorf("%s: terminationGracePeriodSeconds %s leaves under 30s after the %s drain for the final Kafka flush", w.owner, grace, drain)
				}
			}
		}
	})
}

// TestConnectionsFilesAreNamed is the converse of checkConfig's check that
// every file connections.ini names is mounted: every file the chart mounts
// for connections.ini (passwords, SFTP keys, passphrases and known_hosts
// files, FTPS CAs) is named by it, so a Secret such as
// privateKeyPassphraseSecret cannot be mounted and left out of its section.
func TestConnectionsFilesAreNamed(t *testing.T) {
	volumes := []string{"ftp-passwords", "sftp-keys", "ftps-ca"}
	forEachScenario(t, func(t *testing.T, r *rendered) {
		existing := existingSecrets(t, r)
		for _, w := range workloads(r) {
			vols := map[string]corev1.Volume{}
			for _, v := range w.spec.Volumes {
				vols[v.Name] = v
			}
			for _, c := range w.spec.Containers {
				if roleOf(&c) == "" {
					continue
				}
				refs := parseIniRefs(connectionsIni(t, r, existing, w.spec, &c))
				named := slices.Concat(refs.passFiles, refs.sftpFiles, refs.caFiles)
				for _, vm := range c.VolumeMounts {
					if !slices.Contains(volumes, vm.Name) {
						continue
					}
					for _, src := range volumeSources(vols[vm.Name]) {
						for _, it := range src.items {
							if f := path.Join(vm.MountPath, it.Path); !slices.Contains(named, f) {
								t.Errorf("%s container %s: volume %s mounts %s (Secret %s key %s), which connections.ini does not name", w.owner, c.Name, vm.Name, f, src.name, it.Key)
							}
						}
					}
				}
			}
		}
	})
}

// TestPodsAreLockedDown checks every pod, helm tests included: non-root,
// read-only root file system, no privilege escalation, all capabilities
// dropped, seccomp RuntimeDefault, no service account token, no host
// namespaces, and resources requested.
func TestPodsAreLockedDown(t *testing.T) {
	forEachScenario(t, func(t *testing.T, r *rendered) {
		for _, w := range workloads(r) {
			ps := w.spec.SecurityContext
			if ps == nil {
				ps = &corev1.PodSecurityContext{}
			}
			if w.spec.AutomountServiceAccountToken == nil || *w.spec.AutomountServiceAccountToken {
				t.Errorf("%s: automountServiceAccountToken must be false (nothing calls the Kubernetes API)", w.owner)
			}
			if w.spec.HostNetwork || w.spec.HostPID || w.spec.HostIPC {
				t.Errorf("%s: uses a host namespace", w.owner)
			}
			for _, c := range allContainers(w.spec) {
				what := w.owner + " container " + c.Name
				sc := c.SecurityContext
				if sc == nil {
					t.Errorf("%s: no securityContext", what)
					continue
				}
				nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && ps.RunAsNonRoot != nil && *ps.RunAsNonRoot)
				if !nonRoot {
					t.Errorf("%s: runAsNonRoot is not true", what)
				}
				for _, uid := range []*int64{sc.RunAsUser, ps.RunAsUser} {
					if uid != nil && *uid == 0 {
						t.Errorf("%s: runs as uid 0", what)
					}
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%s: readOnlyRootFilesystem is not true", what)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("%s: allowPrivilegeEscalation is not false", what)
				}
				if sc.Privileged != nil && *sc.Privileged {
					t.Errorf("%s: privileged", what)
				}
				if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
					t.Errorf("%s: capabilities must drop ALL and add none", what)
				}
				seccomp := sc.SeccompProfile
				if seccomp == nil {
					seccomp = ps.SeccompProfile
				}
				if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: seccomp profile is not RuntimeDefault", what)
				}
				req := c.Resources.Requests
				if req.Cpu().IsZero() || req.Memory().IsZero() {
					t.Errorf("%s: requests no cpu or memory", what)
				}
				if c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s: no memory limit", what)
				}
				if c.Image == "" || strings.HasSuffix(c.Image, ":") || strings.HasSuffix(c.Image, ":latest") {
					t.Errorf("%s: image %q has no pinned tag", what, c.Image)
				}
			}
			if !w.test && !slices.ContainsFunc(w.spec.Volumes, func(v corev1.Volume) bool { return v.EmptyDir != nil }) {
				t.Errorf("%s: no emptyDir for /tmp next to the read-only root file system", w.owner)
			}
		}
	})
}

// TestNotesShowHealthCheck renders NOTES.txt (helm template skips it) through
// a copy of the chart and checks it shows the grpcurl health check.
func TestNotesShowHealthCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ftp-pooler")
	if err := os.CopyFS(dir, os.DirFS(chartDir(t))); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), notes, 0o644); err != nil {
		t.Fatal(err)
	}
	wrapper := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n{{ tpl (.Files.Get \"notes.txt\") . | indent 4 }}\n"
	if err := os.WriteFile(filepath.Join(dir, "templates", "zz-notes.yaml"), []byte(wrapper), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range scenarios(t) {
		t.Run(s.name, func(t *testing.T) {
			out, err := helm(t, append(templateArgs(t, s, dir), "--show-only", "templates/zz-notes.yaml")...)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"grpc.health.v1.Health/Check", "-dispatcher-admin", "ftppooler.admin.v1.AdminService/ListAgents"} {
				if !bytes.Contains(out, []byte(want)) {
					t.Errorf("NOTES.txt lacks %q:\n%s", want, out)
				}
			}
			if bytes.Contains(out, []byte("<no value>")) {
				t.Errorf("NOTES.txt renders a missing value:\n%s", out)
			}
		})
	}
}
