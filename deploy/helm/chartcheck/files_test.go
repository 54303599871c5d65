package chartcheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// existingSecrets are the Secrets the ci values name as existing
// (testdata/existing-secrets.yaml): what an operator creates before
// installing. Their keys are checked like rendered ones.
func existingSecrets(t *testing.T, r *rendered) map[string]map[string]string {
	t.Helper()
	data, err := os.ReadFile("testdata/existing-secrets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fixtures, errs := decodeAll(scenario{name: "testdata/existing-secrets.yaml"}, data)
	for _, e := range errs {
		t.Fatal(e)
	}
	out := map[string]map[string]string{}
	for _, s := range objects[*corev1.Secret](fixtures) {
		if _, clash := find[*corev1.Secret](r, s.Name); clash {
			t.Errorf("Secret %s is in testdata/existing-secrets.yaml and rendered by the chart", s.Name)
		}
		out[s.Name] = secretMap(s)
	}
	return out
}

func secretMap(s *corev1.Secret) map[string]string {
	m := map[string]string{}
	for k, v := range s.Data {
		m[k] = string(v)
	}
	for k, v := range s.StringData {
		m[k] = v
	}
	return m
}

// placeholderPEM stands in for cert-manager's files: --check-config checks
// that TLS files are configured as a set, not their contents.
const placeholderPEM = "-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----\n"

// secretData returns a Secret's keys: rendered by the chart, issued by a
// rendered cert-manager Certificate (tls.crt, tls.key, ca.crt), or existing.
func secretData(r *rendered, existing map[string]map[string]string, name string) (map[string]string, bool) {
	if s, ok := find[*corev1.Secret](r, name); ok {
		return secretMap(s), true
	}
	for _, c := range objects[*certificate](r) {
		if c.Spec.SecretName == name {
			return map[string]string{"tls.crt": placeholderPEM, "tls.key": placeholderPEM, "ca.crt": placeholderPEM}, true
		}
	}
	m, ok := existing[name]
	return m, ok
}

func configMapData(r *rendered, name string) (map[string]string, bool) {
	cm, ok := find[*corev1.ConfigMap](r, name)
	if !ok {
		return nil, false
	}
	m := map[string]string{}
	for k, v := range cm.Data {
		m[k] = v
	}
	for k, v := range cm.BinaryData {
		m[k] = string(v)
	}
	return m, true
}

// sourceRef is a ConfigMap or Secret a volume projects.
type sourceRef struct {
	kind     string // ConfigMap or Secret
	name     string
	items    []corev1.KeyToPath
	optional bool
}

func volumeSources(v corev1.Volume) []sourceRef {
	opt := func(b *bool) bool { return b != nil && *b }
	switch {
	case v.ConfigMap != nil:
		return []sourceRef{{"ConfigMap", v.ConfigMap.Name, v.ConfigMap.Items, opt(v.ConfigMap.Optional)}}
	case v.Secret != nil:
		return []sourceRef{{"Secret", v.Secret.SecretName, v.Secret.Items, opt(v.Secret.Optional)}}
	case v.Projected != nil:
		var out []sourceRef
		for _, s := range v.Projected.Sources {
			if s.ConfigMap != nil {
				out = append(out, sourceRef{"ConfigMap", s.ConfigMap.Name, s.ConfigMap.Items, opt(s.ConfigMap.Optional)})
			}
			if s.Secret != nil {
				out = append(out, sourceRef{"Secret", s.Secret.Name, s.Secret.Items, opt(s.Secret.Optional)})
			}
		}
		return out
	}
	return nil
}

// containerFS is a container's view of its mounted files, laid out under a
// temporary root directory.
type containerFS struct {
	root string
	// mounts are the container's mount paths; dataDirs those of writable
	// volumes (persistentVolumeClaim, emptyDir), where local endpoints live.
	mounts   []string
	dataDirs []string
}

func (fs *containerFS) host(p string) string { return filepath.Join(fs.root, filepath.FromSlash(p)) }

func (fs *containerFS) exists(p string) bool {
	_, err := os.Stat(fs.host(p))
	return err == nil
}

// onDataVolume reports whether a directory lies on a writable volume mount.
func (fs *containerFS) onDataVolume(dir string) bool {
	for _, m := range fs.dataDirs {
		if dir == m || strings.HasPrefix(dir, strings.TrimSuffix(m, "/")+"/") {
			return true
		}
	}
	return false
}

// materialize writes the files c's volume mounts would show into a fresh
// directory: ConfigMap and Secret keys (rendered or existing), with items
// and projections applied. A key a mount needs but its source lacks is an error.
func materialize(t *testing.T, r *rendered, existing map[string]map[string]string, spec *corev1.PodSpec, c *corev1.Container) (*containerFS, []error) {
	fs := &containerFS{root: t.TempDir()}
	var errs []error
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("mount %s: no volume %s", vm.MountPath, vm.Name))
			continue
		}
		fs.mounts = append(fs.mounts, vm.MountPath)
		if err := os.MkdirAll(fs.host(vm.MountPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if v.PersistentVolumeClaim != nil || v.EmptyDir != nil {
			fs.dataDirs = append(fs.dataDirs, vm.MountPath)
			continue
		}
		for _, src := range volumeSources(v) {
			var data map[string]string
			if src.kind == "ConfigMap" {
				data, ok = configMapData(r, src.name)
			} else {
				data, ok = secretData(r, existing, src.name)
			}
			if !ok {
				if !src.optional {
					errs = append(errs, fmt.Errorf("mount %s: %s %s does not exist", vm.MountPath, src.kind, src.name))
				}
				continue
			}
			items := src.items
			if len(items) == 0 {
				for k := range data {
					items = append(items, corev1.KeyToPath{Key: k, Path: k})
				}
			}
			for _, it := range items {
				val, ok := data[it.Key]
				if !ok {
					errs = append(errs, fmt.Errorf("mount %s: %s %s has no key %q", vm.MountPath, src.kind, src.name, it.Key))
					continue
				}
				dst := fs.host(filepath.Join(vm.MountPath, it.Path))
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(dst, []byte(val), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return fs, errs
}

// containerEnv resolves c's environment as the kubelet would for pod podName.
func containerEnv(r *rendered, existing map[string]map[string]string, c *corev1.Container, podName string) ([]string, []error) {
	var env []string
	var errs []error
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				env = append(env, e.Name+"="+podName)
			case "metadata.namespace":
				env = append(env, e.Name+"="+namespace)
			default:
				errs = append(errs, fmt.Errorf("env %s: unexpected fieldRef %s", e.Name, e.ValueFrom.FieldRef.FieldPath))
			}
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			data, _ := secretData(r, existing, ref.Name)
			v, ok := data[ref.Key]
			if !ok {
				errs = append(errs, fmt.Errorf("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key))
			}
			env = append(env, e.Name+"="+v)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			data, _ := configMapData(r, ref.Name)
			v, ok := data[ref.Key]
			if !ok {
				errs = append(errs, fmt.Errorf("env %s: ConfigMap %s has no key %s", e.Name, ref.Name, ref.Key))
			}
			env = append(env, e.Name+"="+v)
		}
	}
	return env, errs
}

var iniPathKey = regexp.MustCompile(`(?m)^[ \t]*(pass_file|key_file|key_passphrase_file|known_hosts_file|tls_ca_file|base_path|pass_env)[ \t]*[=:][ \t]*(.*?)[ \t]*$`)

// iniRefs are the file, directory and environment references of a connections.ini.
type iniRefs struct {
	passFiles, caFiles, basePaths, passEnvs []string
	// sftpFiles are SFTP endpoints' key_file, key_passphrase_file and
	// known_hosts_file: like passFiles, every process that loads
	// connections.ini reads them at start-up.
	sftpFiles []string
}

func parseIniRefs(ini string) iniRefs {
	var refs iniRefs
	for _, m := range iniPathKey.FindAllStringSubmatch(ini, -1) {
		switch m[1] {
		case "pass_file":
			refs.passFiles = append(refs.passFiles, m[2])
		case "key_file", "key_passphrase_file", "known_hosts_file":
			refs.sftpFiles = append(refs.sftpFiles, m[2])
		case "tls_ca_file":
			refs.caFiles = append(refs.caFiles, m[2])
		case "base_path":
			refs.basePaths = append(refs.basePaths, m[2])
		case "pass_env":
			refs.passEnvs = append(refs.passEnvs, m[2])
		}
	}
	return refs
}

// rebase rewrites the given container paths in file to their place under
// the root, longest first, so the binary on this machine reads the mounted
// copies; the rest of the file is left byte for byte as rendered.
func rebase(fs *containerFS, file string, paths []string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	var pairs []string
	seen := map[string]bool{}
	for _, p := range paths {
		if !seen[p] {
			seen[p] = true
			pairs = append(pairs, p, fs.host(p))
		}
	}
	if len(pairs) == 0 {
		return nil
	}
	return os.WriteFile(file, []byte(strings.NewReplacer(pairs...).Replace(string(data))), 0o600)
}

var errNotMounted = errors.New("not mounted")
