package status

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, s *Server, path string) int {
	t.Helper()
	rec := httptest.NewRecorder()
	s.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code
}

func TestProfilesOnlyWhenAskedFor(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(logger, prometheus.NewRegistry())
	if code := get(t, s, "/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ answered %d without ServeProfiles", code)
	}
	if code := get(t, s, "/metrics"); code != http.StatusOK {
		t.Fatalf("/metrics answered %d", code)
	}
	s.ServeProfiles()
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
		if code := get(t, s, p); code != http.StatusOK {
			t.Fatalf("%s answered %d with ServeProfiles", p, code)
		}
	}
}
