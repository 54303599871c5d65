package chartcheck

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// workload is a pod the chart runs: a StatefulSet's, a Deployment's or a
// helm test Pod.
type workload struct {
	owner  string // Kind/name
	kind   string
	name   string
	labels map[string]string
	spec   *corev1.PodSpec
	test   bool
}

func workloads(r *rendered) []workload {
	var out []workload
	for _, s := range objects[*appsv1.StatefulSet](r) {
		out = append(out, workload{owner: "StatefulSet/" + s.Name, kind: "StatefulSet", name: s.Name, labels: s.Spec.Template.Labels, spec: &s.Spec.Template.Spec})
	}
	for _, d := range objects[*appsv1.Deployment](r) {
		out = append(out, workload{owner: "Deployment/" + d.Name, kind: "Deployment", name: d.Name, labels: d.Spec.Template.Labels, spec: &d.Spec.Template.Spec})
	}
	for _, p := range objects[*corev1.Pod](r) {
		out = append(out, workload{owner: "Pod/" + p.Name, kind: "Pod", name: p.Name, labels: p.Labels, spec: &p.Spec, test: p.Annotations["helm.sh/hook"] == "test"})
	}
	return out
}

// selecting returns the workloads (not test pods) a label selector selects.
func selecting(r *rendered, sel labels.Selector) []workload {
	var out []workload
	for _, w := range workloads(r) {
		if !w.test && sel.Matches(labels.Set(w.labels)) {
			out = append(out, w)
		}
	}
	return out
}

func mustSelector(t *testing.T, what string, ls *metav1.LabelSelector) labels.Selector {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Fatalf("%s: invalid label selector: %v", what, err)
	}
	return sel
}

// forEachScenario runs f for the defaults and every ci values file.
func forEachScenario(t *testing.T, f func(t *testing.T, r *rendered)) {
	for _, s := range scenarios(t) {
		t.Run(s.name, func(t *testing.T) { f(t, render(t, s)) })
	}
}

// TestManifestsDecodeStrictly renders the chart for the defaults and each
// ci values file and decodes every manifest into its API type with unknown
// fields rejected (render does it); it also checks the expected objects exist.
func TestManifestsDecodeStrictly(t *testing.T) {
	forEachScenario(t, func(t *testing.T, r *rendered) {
		kinds := map[string]int{}
		for _, m := range r.manifests {
			kinds[m.gvk.Kind]++
		}
		for _, want := range []string{"StatefulSet", "Deployment", "ConfigMap", "Service", "PodDisruptionBudget", "ServiceAccount"} {
			if kinds[want] == 0 {
				t.Errorf("no %s rendered", want)
			}
		}
		if kinds["Service"] < 3 {
			t.Errorf("want the headless, admin and agent Services, got %d Services", kinds["Service"])
		}
		t.Logf("%d manifests: %v", len(r.manifests), kinds)
	})
}

// TestNamesAndLabels checks what the API server would refuse: object names,
// Service names (DNS labels), label keys and values, port and container
// names, and StatefulSet names short enough for the controller-revision-hash label.
func TestNamesAndLabels(t *testing.T) {
	check := func(t *testing.T, r *rendered) {
		for _, m := range r.manifests {
			for _, e := range validation.IsDNS1123Subdomain(m.name) {
				t.Errorf("%s: name: %s", m, e)
			}
			if m.gvk.Kind == "Service" {
				for _, e := range validation.IsDNS1035Label(m.name) {
					t.Errorf("%s: Service name: %s", m, e)
				}
			}
			if m.ns != namespace && m.gvk.Kind != "ServiceMonitor" {
				t.Errorf("%s: namespace %q, want the release's %q", m, m.ns, namespace)
			}
			checkLabels(t, m.String(), m.metadata.Labels)
		}
		for _, s := range objects[*appsv1.StatefulSet](r) {
			if len(s.Name) > 52 {
				t.Errorf("StatefulSet %s: name longer than 52 characters: its pods' controller-revision-hash label would not fit", s.Name)
			}
		}
		for _, w := range workloads(r) {
			checkLabels(t, w.owner+" pod template", w.labels)
			for _, c := range w.spec.Containers {
				for _, e := range validation.IsDNS1123Label(c.Name) {
					t.Errorf("%s: container %s: %s", w.owner, c.Name, e)
				}
				for _, p := range c.Ports {
					for _, e := range validation.IsValidPortName(p.Name) {
						t.Errorf("%s: port name %q: %s", w.owner, p.Name, e)
					}
				}
			}
		}
	}
	forEachScenario(t, check)
	// The longest release name helm accepts (53 characters) still fits.
	long := strings.Repeat("r", 53)
	t.Run("long-release-name", func(t *testing.T) {
		check(t, render(t, scenario{name: "long-release-name", release: long, set: []string{"dispatcher.replicas=12"}}))
	})
}

func checkLabels(t *testing.T, what string, l map[string]string) {
	t.Helper()
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			t.Errorf("%s: label key %q: %s", what, k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			t.Errorf("%s: label %s value %q: %s", what, k, v, e)
		}
	}
}

// TestPodSpecsAreConsistent checks each pod spec against itself: volumes
// that mounts name exist, names are unique, probes point at container ports.
func TestPodSpecsAreConsistent(t *testing.T) {
	forEachScenario(t, func(t *testing.T, r *rendered) {
		for _, w := range workloads(r) {
			vols := map[string]bool{}
			for _, v := range w.spec.Volumes {
				if vols[v.Name] {
					t.Errorf("%s: volume %s defined twice", w.owner, v.Name)
				}
				vols[v.Name] = true
				for _, e := range validation.IsDNS1123Label(v.Name) {
					t.Errorf("%s: volume name %q: %s", w.owner, v.Name, e)
				}
			}
			used := map[string]bool{}
			containers := map[string]bool{}
			for _, c := range allContainers(w.spec) {
				if containers[c.Name] {
					t.Errorf("%s: container %s defined twice", w.owner, c.Name)
				}
				containers[c.Name] = true
				paths := map[string]bool{}
				for _, vm := range c.VolumeMounts {
					if !vols[vm.Name] {
						t.Errorf("%s: container %s mounts undefined volume %s", w.owner, c.Name, vm.Name)
					}
					used[vm.Name] = true
					if paths[vm.MountPath] {
						t.Errorf("%s: container %s: two mounts at %s", w.owner, c.Name, vm.MountPath)
					}
					paths[vm.MountPath] = true
					if !path.IsAbs(vm.MountPath) {
						t.Errorf("%s: container %s: mount path %s is not absolute", w.owner, c.Name, vm.MountPath)
					}
				}
				envs := map[string]bool{}
				for _, e := range c.Env {
					if envs[e.Name] {
						t.Errorf("%s: container %s: env %s set twice", w.owner, c.Name, e.Name)
					}
					envs[e.Name] = true
					for _, msg := range validation.IsEnvVarName(e.Name) {
						t.Errorf("%s: container %s: env name %q: %s", w.owner, c.Name, e.Name, msg)
					}
				}
				portNames, portNumbers := map[string]bool{}, map[int32]bool{}
				for _, p := range c.Ports {
					if portNames[p.Name] || portNumbers[p.ContainerPort] {
						t.Errorf("%s: container %s: port %s/%d defined twice", w.owner, c.Name, p.Name, p.ContainerPort)
					}
					portNames[p.Name], portNumbers[p.ContainerPort] = true, true
				}
				for kind, p := range probes(&c) {
					if err := probeTargetsPort(p, &c); err != nil {
						t.Errorf("%s: container %s: %s: %v", w.owner, c.Name, kind, err)
					}
				}
			}
			for v := range vols {
				if !used[v] {
					t.Errorf("%s: volume %s is mounted by no container", w.owner, v)
				}
			}
		}
	})
}

func allContainers(spec *corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(spec.InitContainers), spec.Containers...)
}

func probes(c *corev1.Container) map[string]*corev1.Probe {
	out := map[string]*corev1.Probe{}
	for k, p := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
		if p != nil {
			out[k] = p
		}
	}
	return out
}

// probePort returns the container port number a probe targets.
func probePort(p *corev1.Probe, c *corev1.Container) (int32, error) {
	var target intstr.IntOrString
	switch {
	case p.GRPC != nil:
		target = intstr.FromInt32(p.GRPC.Port)
	case p.HTTPGet != nil:
		target = p.HTTPGet.Port
	case p.TCPSocket != nil:
		target = p.TCPSocket.Port
	default:
		return 0, fmt.Errorf("no grpc, httpGet or tcpSocket action")
	}
	return resolvePort(target, c)
}

func probeTargetsPort(p *corev1.Probe, c *corev1.Container) error {
	_, err := probePort(p, c)
	return err
}

// resolvePort finds a named or numbered port among the container's ports.
func resolvePort(target intstr.IntOrString, c *corev1.Container) (int32, error) {
	for _, cp := range c.Ports {
		if (target.Type == intstr.String && cp.Name == target.StrVal) || (target.Type == intstr.Int && cp.ContainerPort == target.IntVal) {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("port %s is not a container port", target.String())
}

// TestReferencesResolve checks the objects against each other: selectors
// select pods, Services' target ports exist on them, the StatefulSet's
// serviceName is a headless Service, the HPA's target exists, the
// ServiceMonitor finds Services with its port, NetworkPolicies' named ports
// exist, and every ConfigMap and Secret a pod uses is rendered, created by a
// cert-manager Certificate, or one the values name as existing.
func TestReferencesResolve(t *testing.T) {
	forEachScenario(t, func(t *testing.T, r *rendered) {
		for _, s := range objects[*appsv1.StatefulSet](r) {
			sel := mustSelector(t, "StatefulSet "+s.Name, s.Spec.Selector)
			if !sel.Matches(labels.Set(s.Spec.Template.Labels)) {
				t.Errorf("StatefulSet %s: selector does not match its pod template", s.Name)
			}
			svc, ok := find[*corev1.Service](r, s.Spec.ServiceName)
			switch {
			case !ok:
				t.Errorf("StatefulSet %s: serviceName %s is not rendered", s.Name, s.Spec.ServiceName)
			case svc.Spec.ClusterIP != corev1.ClusterIPNone:
				t.Errorf("StatefulSet %s: Service %s is not headless", s.Name, svc.Name)
			case !svc.Spec.PublishNotReadyAddresses:
				t.Errorf("Service %s: agents must resolve dispatchers that are not ready yet (publishNotReadyAddresses)", svc.Name)
			}
		}
		for _, d := range objects[*appsv1.Deployment](r) {
			if !mustSelector(t, "Deployment "+d.Name, d.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("Deployment %s: selector does not match its pod template", d.Name)
			}
		}
		for _, svc := range objects[*corev1.Service](r) {
			pods := selecting(r, labels.SelectorFromSet(svc.Spec.Selector))
			if len(svc.Spec.Selector) == 0 || len(pods) == 0 {
				t.Errorf("Service %s selects no workload", svc.Name)
				continue
			}
			for _, sp := range svc.Spec.Ports {
				for _, w := range pods {
					if !anyContainerHasPort(w.spec, sp.TargetPort) {
						t.Errorf("Service %s: targetPort %s is not a container port of %s", svc.Name, sp.TargetPort.String(), w.owner)
					}
				}
			}
		}
		for _, pdb := range objects[*policyv1.PodDisruptionBudget](r) {
			if len(selecting(r, mustSelector(t, "PDB "+pdb.Name, pdb.Spec.Selector))) == 0 {
				t.Errorf("PodDisruptionBudget %s selects no workload", pdb.Name)
			}
			if pdb.Spec.MinAvailable != nil {
				t.Errorf("PodDisruptionBudget %s: minAvailable blocks node drains of a single replica; the chart uses maxUnavailable", pdb.Name)
			}
		}
		for _, hpa := range objects[*autoscalingv2.HorizontalPodAutoscaler](r) {
			ref := hpa.Spec.ScaleTargetRef
			d, ok := find[*appsv1.Deployment](r, ref.Name)
			if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || !ok {
				t.Errorf("HPA %s: target %s %s/%s is not a rendered Deployment", hpa.Name, ref.APIVersion, ref.Kind, ref.Name)
				continue
			}
			if d.Spec.Replicas != nil {
				t.Errorf("Deployment %s sets replicas although HPA %s scales it: every upgrade would reset the scale", d.Name, hpa.Name)
			}
			if len(hpa.Spec.Metrics) == 0 {
				t.Errorf("HPA %s has no metrics", hpa.Name)
			}
			for _, m := range hpa.Spec.Metrics {
				if m.Resource != nil {
					for _, c := range d.Spec.Template.Spec.Containers {
						if _, ok := c.Resources.Requests[m.Resource.Name]; !ok {
							t.Errorf("HPA %s scales on %s utilization but container %s requests no %s", hpa.Name, m.Resource.Name, c.Name, m.Resource.Name)
						}
					}
				}
			}
		}
		for _, sm := range objects[*monitoringv1.ServiceMonitor](r) {
			if !sm.Spec.NamespaceSelector.Any && !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, namespace) && sm.Namespace != namespace {
				t.Errorf("ServiceMonitor %s does not look in namespace %s", sm.Name, namespace)
			}
			sel := mustSelector(t, "ServiceMonitor "+sm.Name, &sm.Spec.Selector)
			var matched []*corev1.Service
			for _, svc := range objects[*corev1.Service](r) {
				if sel.Matches(labels.Set(svc.Labels)) {
					matched = append(matched, svc)
				}
			}
			components := map[string]bool{}
			for _, svc := range matched {
				components[svc.Labels["app.kubernetes.io/component"]] = true
				for _, ep := range sm.Spec.Endpoints {
					if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
						t.Errorf("ServiceMonitor %s: Service %s has no port %q", sm.Name, svc.Name, ep.Port)
					}
				}
			}
			if !components["dispatcher"] || !components["agent"] {
				t.Errorf("ServiceMonitor %s must scrape dispatchers and agents, selects Services of %v", sm.Name, components)
			}
			for _, ep := range sm.Spec.Endpoints {
				if ep.Path != "/metrics" {
					t.Errorf("ServiceMonitor %s: path %q, the binaries serve /metrics", sm.Name, ep.Path)
				}
				checkDuration(t, "ServiceMonitor interval", string(ep.Interval))
				checkDuration(t, "ServiceMonitor scrapeTimeout", string(ep.ScrapeTimeout))
			}
		}
		for _, np := range objects[*networkingv1.NetworkPolicy](r) {
			pods := selecting(r, mustSelector(t, "NetworkPolicy "+np.Name, &np.Spec.PodSelector))
			if len(pods) == 0 {
				t.Errorf("NetworkPolicy %s selects no workload", np.Name)
			}
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					if p.Port == nil {
						continue
					}
					for _, w := range pods {
						if !anyContainerHasPort(w.spec, *p.Port) {
							t.Errorf("NetworkPolicy %s: ingress port %s is not a port of %s", np.Name, p.Port.String(), w.owner)
						}
					}
				}
			}
		}
		// ConfigMaps and Secrets the pods use.
		existing := existingSecrets(t, r)
		for _, w := range workloads(r) {
			for _, v := range w.spec.Volumes {
				for _, ref := range volumeSources(v) {
					if ref.kind == "ConfigMap" {
						if _, ok := find[*corev1.ConfigMap](r, ref.name); !ok && !ref.optional {
							t.Errorf("%s: volume %s: ConfigMap %s is not rendered", w.owner, v.Name, ref.name)
						}
						continue
					}
					if _, ok := secretData(r, existing, ref.name); !ok && !ref.optional {
						t.Errorf("%s: volume %s: Secret %s is neither rendered, issued by a rendered Certificate, nor in testdata/existing-secrets.yaml", w.owner, v.Name, ref.name)
					}
				}
			}
			for _, c := range allContainers(w.spec) {
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
						ref := e.ValueFrom.SecretKeyRef
						data, ok := secretData(r, existing, ref.Name)
						if _, has := data[ref.Key]; !ok || !has {
							t.Errorf("%s: env %s: Secret %s has no key %s", w.owner, e.Name, ref.Name, ref.Key)
						}
					}
				}
			}
		}
		for _, c := range objects[*certificate](r) {
			checkCertificate(t, c)
		}
	})
}

func anyContainerHasPort(spec *corev1.PodSpec, target intstr.IntOrString) bool {
	for _, c := range spec.Containers {
		if _, err := resolvePort(target, &c); err == nil {
			return true
		}
	}
	return false
}

func checkDuration(t *testing.T, what, d string) {
	t.Helper()
	if d == "" {
		return
	}
	if _, err := time.ParseDuration(d); err != nil {
		t.Errorf("%s %q: %v", what, d, err)
	}
}

func checkCertificate(t *testing.T, c *certificate) {
	t.Helper()
	s := c.Spec
	if s.SecretName == "" || s.IssuerRef.Name == "" {
		t.Errorf("Certificate %s: secretName and issuerRef.name are required", c.Name)
	}
	if s.CommonName == "" && len(s.DNSNames) == 0 {
		t.Errorf("Certificate %s: neither commonName nor dnsNames", c.Name)
	}
	if len(s.CommonName) > 64 {
		t.Errorf("Certificate %s: commonName longer than 64 characters", c.Name)
	}
	for _, n := range s.DNSNames {
		if errs := validation.IsWildcardDNS1123Subdomain(n); len(errs) > 0 && len(validation.IsDNS1123Subdomain(n)) > 0 {
			t.Errorf("Certificate %s: dnsName %q: %v", c.Name, n, errs)
		}
	}
	known := []string{"signing", "digital signature", "content commitment", "key encipherment", "key agreement", "data encipherment",
		"cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth", "client auth", "code signing", "email protection",
		"s/mime", "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"}
	for _, u := range s.Usages {
		if !slices.Contains(known, u) {
			t.Errorf("Certificate %s: unknown usage %q", c.Name, u)
		}
	}
	checkDuration(t, "Certificate "+c.Name+" duration", s.Duration)
	checkDuration(t, "Certificate "+c.Name+" renewBefore", s.RenewBefore)
	if pk := s.PrivateKey; pk != nil {
		if !slices.Contains([]string{"RSA", "ECDSA", "Ed25519"}, pk.Algorithm) || !slices.Contains([]string{"", "PKCS1", "PKCS8"}, pk.Encoding) ||
			!slices.Contains([]string{"", "Never", "Always"}, pk.RotationPolicy) {
			t.Errorf("Certificate %s: invalid privateKey %+v", c.Name, *pk)
		}
	}
	if !slices.Contains([]string{"Issuer", "ClusterIssuer"}, s.IssuerRef.Kind) && s.IssuerRef.Group == "cert-manager.io" {
		t.Errorf("Certificate %s: issuerRef.kind %q", c.Name, s.IssuerRef.Kind)
	}
}
