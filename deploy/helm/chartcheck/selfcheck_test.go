package chartcheck

import (
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
