package chartcheck

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestChecksCatchMistakes makes sure the checks above can fail: mistakes
// planted in the values and in the rendered configuration are reported.
func TestChecksCatchMistakes(t *testing.T) {
	t.Run("unknown values key", func(t *testing.T) {
		for _, set := range []string{"replicaCount=3", "config.kafka.bootstrap_server=kafka:9092", "dispatcher.admin.tls.mutal=true",
			"connections.endpoints.x.type=ftp,connections.endpoints.x.host=h,connections.endpoints.x.pasword=p"} {
			_, err := renderRaw(t, scenario{name: "tampered", set: []string{set}})
			if err == nil || !strings.Contains(err.Error(), "not allowed") {
				t.Errorf("--set %s: want values.schema.json to reject the unknown key, got %v", set, err)
			}
		}
	})
	t.Run("wrongly typed value", func(t *testing.T) {
		for _, set := range []string{"config.lease.ttl=30", "dispatcher.replicas=two", "config.kafka.delivery=maybe"} {
			if _, err := renderRaw(t, scenario{name: "tampered", set: []string{set}}); err == nil {
				t.Errorf("--set %s: want values.schema.json to reject it", set)
			}
		}
	})
	t.Run("unknown config.yaml key", func(t *testing.T) {
		out, err := renderRaw(t, scenario{name: "defaults"})
		if err != nil {
			t.Fatal(err)
		}
		r, errs := decodeAll(scenario{name: "tampered"}, out)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		for _, cm := range objects[*corev1.ConfigMap](r) {
			cm.Data["config.yaml"] = strings.Replace(cm.Data["config.yaml"], "pool:\n", "pool:\n  max_sessions_per_agent: 5\n", 1)
		}
		checked := 0
		for _, w := range workloads(r) {
			for _, c := range w.spec.Containers {
				if roleOf(&c) == "" {
					continue
				}
				checked++
				_, err := checkConfig(t, r, w, &c)
				if err == nil || !strings.Contains(err.Error(), `unknown key "pool.max_sessions_per_agent"`) {
					t.Errorf("%s: want --check-config to reject the unknown key, got %v", w.owner, err)
				}
			}
		}
		if checked < 2 {
			t.Errorf("checked %d containers, want the dispatcher and the agent at least", checked)
		}
	})
	t.Run("sftp endpoint the services would refuse", func(t *testing.T) {
		// sftp prefixes each key=value with an sftp endpoint's values path.
		sftp := func(kv ...string) []string {
			out := []string{"connections.endpoints.s.type=sftp"}
			for _, e := range kv {
				out = append(out, "connections.endpoints.s."+e)
			}
			return out
		}
		const fp = "hostKeyFingerprint=SHA256:DpbcurgurTX6JpVl7QGGygdgink8Z7NZ6cIMNQexf6s"
		for _, c := range []struct {
			set  []string
			want string
		}{
			{sftp("host=h", "user=u", "password=p"), "connections.endpoints.s: an sftp endpoint needs the server's host key"},
			{sftp("host=h", "user=u", "password=p", "insecureIgnoreHostKey=false"), "connections.endpoints.s: an sftp endpoint needs the server's host key"},
			{sftp("host=h", "user=u", fp), "connections.endpoints.s: an sftp endpoint needs password, passwordSecret or privateKeySecret"},
			{sftp("host=h", "user=u", "password=p", fp, "privateKeyPassphraseSecret.name=k", "privateKeyPassphraseSecret.key=pp"),
				"connections.endpoints.s: privateKeyPassphraseSecret is set but privateKeySecret is not"},
			// values.schema.json's: required keys, fingerprint syntax, FTP-only keys.
			{sftp("user=u", "password=p", fp), "host"},
			{sftp("host=h", "password=p", fp), "user"},
			{sftp("host=h", "user=u", "password=p", "hostKeyFingerprint=SHA256:short"), "hostKeyFingerprint"},
			{sftp("host=h", "user=u", "password=p", fp, "passive=true"), "passive"},
		} {
			_, err := renderRaw(t, scenario{name: "tampered", set: c.set})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("--set %v: want the render refused mentioning %q, got %v", c.set, c.want, err)
			}
		}
		out, err := renderRaw(t, scenario{name: "insecure", set: sftp("host=h", "user=u", "password=p", "insecureIgnoreHostKey=true")})
		if err != nil || !strings.Contains(string(out), "insecure_ignore_host_key = true") {
			t.Errorf("insecureIgnoreHostKey=true: want insecure_ignore_host_key = true in connections.ini, got %v", err)
		}
	})
	t.Run("sftp key or known_hosts file not mounted", func(t *testing.T) {
		out, err := renderRaw(t, scenario{name: "sftp", values: filepath.Join(chartDir(t), "ci", "sftp-endpoints-values.yaml")})
		if err != nil {
			t.Fatal(err)
		}
		const dir = "/etc/ftp-pooler/sftp-keys/"
		// "" drops the container's whole sftp-keys mount; a file name drops
		// that file from the pod's sftp-keys volume.
		for _, file := range []string{"", "partner-sftp.key", "partner-sftp.passphrase", "partner-sftp.known_hosts", "proftpd-sftp.key"} {
			r, errs := decodeAll(scenario{name: "tampered"}, out)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			want := dir + file
			if file == "" {
				want = dir + "partner-sftp.key"
			}
			checked := map[string]int{}
			for _, w := range workloads(r) {
				for i := range w.spec.Containers {
					c := &w.spec.Containers[i]
					if roleOf(c) == "" {
						continue
					}
					if file == "" {
						c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.Name == "sftp-keys" })
					} else {
						dropProjectedFile(w.spec, "sftp-keys", file)
					}
					checked[roleOf(c)]++
					_, err := checkConfig(t, r, w, c)
					if err == nil || !strings.Contains(err.Error(), "connections.ini names "+want+": not mounted") {
						t.Errorf("%s without %s: want the missing file reported, got %v", w.owner, want, err)
					}
				}
			}
			if checked["dispatcher"] < 2 || checked["agent"] < 2 {
				t.Errorf("checked containers %v, want the dispatcher, the agent and their helm tests", checked)
			}
		}
	})
	t.Run("password file not mounted", func(t *testing.T) {
		out, err := renderRaw(t, scenario{name: "pw", set: []string{"connections.endpoints.remote-ftp.password=secret"}})
		if err != nil {
			t.Fatal(err)
		}
		r, errs := decodeAll(scenario{name: "tampered"}, out)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		for _, s := range objects[*corev1.Secret](r) {
			delete(s.StringData, "remote-ftp.password")
		}
		for _, w := range workloads(r) {
			for _, c := range w.spec.Containers {
				if roleOf(&c) == "" {
					continue
				}
				if _, err := checkConfig(t, r, w, &c); err == nil || !strings.Contains(err.Error(), "remote-ftp.password") {
					t.Errorf("%s: want the missing Secret key reported, got %v", w.owner, err)
				}
			}
		}
	})
}

// dropProjectedFile removes the item projected at file from the pod's
// projected volume vol, and a source left without items with it (no items
// would project every key of its Secret).
func dropProjectedFile(spec *corev1.PodSpec, vol, file string) {
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		if v.Name != vol || v.Projected == nil {
			continue
		}
		v.Projected.Sources = slices.DeleteFunc(v.Projected.Sources, func(s corev1.VolumeProjection) bool {
			if s.Secret == nil {
				return false
			}
			s.Secret.Items = slices.DeleteFunc(s.Secret.Items, func(it corev1.KeyToPath) bool { return it.Path == file })
			return len(s.Secret.Items) == 0
		})
	}
}
