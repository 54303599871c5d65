package chartcheck

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The release every render uses. The namespace is not "default" so that a
// template that forgets .Release.Namespace shows up in the names it renders.
const (
	releaseName = "ftp-pooler"
	namespace   = "ftp"
	// kubeVersion is passed to helm: a go-installed helm reports v1.20 as the
	// cluster version, below the chart's kubeVersion constraint.
	kubeVersion = "1.33.0"
)

// repoRoot is the checkout root, three levels above this module.
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", "..", ".."))
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "deploy", "helm", "ftp-pooler") }

// helmBinary is $HELM, or the checkout's .bin/helm that scripts/helm-lint.sh installs.
func helmBinary(t testing.TB) string {
	t.Helper()
	h := os.Getenv("HELM")
	if h == "" {
		h = filepath.Join(repoRoot(t), ".bin", "helm")
	}
	if _, err := os.Stat(h); err != nil {
		t.Fatalf("helm not found at %s (set HELM, or run scripts/helm-lint.sh, which installs it): %v", h, err)
	}
	return h
}

// binDir holds dispatcher and agent: $FTP_POOLER_BIN or the checkout's bin/ (make build).
func binDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("FTP_POOLER_BIN")
	if d == "" {
		d = filepath.Join(repoRoot(t), "bin")
	}
	for _, b := range []string{"dispatcher", "agent"} {
		if _, err := os.Stat(filepath.Join(d, b)); err != nil {
			t.Fatalf("%s not found in %s (run make build, or set FTP_POOLER_BIN): %v", b, d, err)
		}
	}
	return d
}

// valuesFiles are the chart's ci/*-values.yaml files, by base name.
func valuesFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir(t), "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no ci/*-values.yaml files in the chart")
	}
	sort.Strings(files)
	return files
}

// scenario is one way of rendering the chart.
type scenario struct {
	name   string   // "defaults" or the values file's base name
	values string   // values file, "" for the defaults
	set    []string // --set arguments
	// release overrides releaseName.
	release string
}

// scenarios are the defaults plus every ci values file.
func scenarios(t testing.TB) []scenario {
	out := []scenario{{name: "defaults"}}
	for _, f := range valuesFiles(t) {
		out = append(out, scenario{name: filepath.Base(f), values: f})
	}
	return out
}

// manifest is one rendered document, decoded.
type manifest struct {
	source   string // the template it came from
	gvk      schema.GroupVersionKind
	name     string
	ns       string
	raw      []byte
	obj      any
	metadata *metav1.ObjectMeta
}

func (m *manifest) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", m.gvk.Kind, m.ns, m.name, m.source)
}

// rendered is a chart render, indexed.
type rendered struct {
	scenario  scenario
	manifests []*manifest
}

// objects returns the rendered objects of type T.
func objects[T any](r *rendered) []T {
	var out []T
	for _, m := range r.manifests {
		if o, ok := m.obj.(T); ok {
			out = append(out, o)
		}
	}
	return out
}

// find returns the object of type T with the given name, or the zero value.
func find[T interface{ GetName() string }](r *rendered, name string) (T, bool) {
	for _, o := range objects[T](r) {
		if o.GetName() == name {
			return o, true
		}
	}
	var zero T
	return zero, false
}

// certificate is the part of cert-manager's Certificate (cert-manager.io/v1)
// the chart uses; a field the chart renders that is not here fails decoding,
// so adding one means checking it against cert-manager's API first.
type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName  string   `json:"secretName"`
		CommonName  string   `json:"commonName,omitempty"`
		DNSNames    []string `json:"dnsNames,omitempty"`
		Usages      []string `json:"usages,omitempty"`
		Duration    string   `json:"duration,omitempty"`
		RenewBefore string   `json:"renewBefore,omitempty"`
		PrivateKey  *struct {
			Algorithm      string `json:"algorithm,omitempty"`
			Size           int    `json:"size,omitempty"`
			Encoding       string `json:"encoding,omitempty"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
		IssuerRef struct {
			Name  string `json:"name"`
			Kind  string `json:"kind,omitempty"`
			Group string `json:"group,omitempty"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

// newObject returns an empty typed object for a kind the chart may render.
func newObject(gvk schema.GroupVersionKind) (any, *metav1.ObjectMeta, bool) {
	switch gvk {
	case corev1.SchemeGroupVersion.WithKind("ConfigMap"):
		o := &corev1.ConfigMap{}
		return o, &o.ObjectMeta, true
	case corev1.SchemeGroupVersion.WithKind("Secret"):
		o := &corev1.Secret{}
		return o, &o.ObjectMeta, true
	case corev1.SchemeGroupVersion.WithKind("Service"):
		o := &corev1.Service{}
		return o, &o.ObjectMeta, true
	case corev1.SchemeGroupVersion.WithKind("ServiceAccount"):
		o := &corev1.ServiceAccount{}
		return o, &o.ObjectMeta, true
	case corev1.SchemeGroupVersion.WithKind("Pod"):
		o := &corev1.Pod{}
		return o, &o.ObjectMeta, true
	case appsv1.SchemeGroupVersion.WithKind("StatefulSet"):
		o := &appsv1.StatefulSet{}
		return o, &o.ObjectMeta, true
	case appsv1.SchemeGroupVersion.WithKind("Deployment"):
		o := &appsv1.Deployment{}
		return o, &o.ObjectMeta, true
	case policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"):
		o := &policyv1.PodDisruptionBudget{}
		return o, &o.ObjectMeta, true
	case autoscalingv2.SchemeGroupVersion.WithKind("HorizontalPodAutoscaler"):
		o := &autoscalingv2.HorizontalPodAutoscaler{}
		return o, &o.ObjectMeta, true
	case networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"):
		o := &networkingv1.NetworkPolicy{}
		return o, &o.ObjectMeta, true
	case monitoringv1.SchemeGroupVersion.WithKind("ServiceMonitor"):
		o := &monitoringv1.ServiceMonitor{}
		return o, &o.ObjectMeta, true
	case schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}:
		o := &certificate{}
		return o, &o.ObjectMeta, true
	}
	return nil, nil, false
}

var (
	docSeparator = regexp.MustCompile(`(?m)^---\s*$`)
	sourceLine   = regexp.MustCompile(`(?m)^# Source: (.+)$`)
)

// helm runs the helm binary and returns its standard output.
func helm(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

func templateArgs(t testing.TB, s scenario, chart string) []string {
	rel := releaseName
	if s.release != "" {
		rel = s.release
	}
	args := []string{"template", rel, chart, "--namespace", namespace, "--kube-version", kubeVersion}
	if s.values != "" {
		args = append(args, "--values", s.values)
	}
	for _, kv := range s.set {
		args = append(args, "--set", kv)
	}
	return args
}

// renderRaw runs helm template for s and returns its output.
func renderRaw(t testing.TB, s scenario) ([]byte, error) {
	return helm(t, templateArgs(t, s, chartDir(t))...)
}

var (
	renderCacheMu sync.Mutex
	renderCache   = map[string]*rendered{}
)

// render renders and decodes s strictly, failing the test on any error.
// Renders of the same scenario are shared between tests.
func render(t *testing.T, s scenario) *rendered {
	t.Helper()
	key := fmt.Sprint(s)
	renderCacheMu.Lock()
	defer renderCacheMu.Unlock()
	if r, ok := renderCache[key]; ok {
		return r
	}
	out, err := renderRaw(t, s)
	if err != nil {
		t.Fatal(err)
	}
	r, errs := decodeAll(s, out)
	for _, e := range errs {
		t.Error(e)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	renderCache[key] = r
	return r
}

// decodeAll splits helm's output into documents and decodes each strictly
// into its Kubernetes API type: unknown fields, duplicate fields and fields
// whose case differs from the API's are errors, as the API server's strict
// field validation would make them.
func decodeAll(s scenario, out []byte) (*rendered, []error) {
	r := &rendered{scenario: s}
	var errs []error
	for _, doc := range docSeparator.Split(string(out), -1) {
		source := "?"
		if m := sourceLine.FindStringSubmatch(doc); m != nil {
			source = m[1]
		}
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		m, err := decode(source, []byte(doc))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", s.name, source, err))
			continue
		}
		r.manifests = append(r.manifests, m)
	}
	if len(r.manifests) == 0 {
		errs = append(errs, fmt.Errorf("%s: helm rendered no manifests", s.name))
	}
	return r, errs
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func decode(source string, doc []byte) (*manifest, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML (or a duplicate key): %w", err)
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		return nil, err
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return nil, err
	}
	gvk := gv.WithKind(tm.Kind)
	obj, meta, ok := newObject(gvk)
	if !ok {
		return nil, fmt.Errorf("unexpected kind %s: add it to newObject with its API type", gvk)
	}
	strict, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", gvk.Kind, err)
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("%s: strict decoding: %s", gvk.Kind, strings.Join(msgs, "; "))
	}
	return &manifest{source: source, gvk: gvk, name: meta.Name, ns: meta.Namespace, raw: doc, obj: obj, metadata: meta}, nil
}
