// Package status serves a process's operational HTTP endpoints: /metrics for
// Prometheus, /healthz for liveness and /readyz for readiness (with /live and
// /ready as aliases, the paths the original service's probes used).
package status

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is ready; nil means ready.
type Check func(ctx context.Context) error

// Server serves the operational endpoints on one or more listeners.
type Server struct {
	logger   *slog.Logger
	mux      *http.ServeMux
	mu       sync.Mutex
	checks   map[string]Check
	listener []net.Listener
}

// New returns a server exposing reg's metrics.
func New(logger *slog.Logger, reg *prometheus.Registry) *Server {
	s := &Server{logger: logger, mux: http.NewServeMux(), checks: map[string]Check{}}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	for _, p := range []string{"GET /healthz", "GET /live"} {
		s.mux.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("ok\n"))
		})
	}
	for _, p := range []string{"GET /readyz", "GET /ready"} {
		s.mux.HandleFunc(p, s.ready)
	}
	return s
}

// ServeProfiles adds Go's profiling endpoints under /debug/pprof/.
func (s *Server) ServeProfiles() {
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// AddCheck registers a readiness check under name.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// Listen binds addr; call before Run so bind errors stop start-up.
func (s *Server) Listen(addr string) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.listener = append(s.listener, l)
	return l.Addr(), nil
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	s.mu.Lock()
	checks := make(map[string]Check, len(s.checks))
	for k, v := range s.checks {
		checks[k] = v
	}
	s.mu.Unlock()
	report := map[string]string{}
	ok := true
	for name, c := range checks {
		if err := c(ctx); err != nil {
			report[name] = err.Error()
			ok = false
		} else {
			report[name] = "ok"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": ok, "checks": report})
}

// Close releases the listeners of a server that never ran (start-up failed
// after Listen).
func (s *Server) Close() {
	for _, l := range s.listener {
		_ = l.Close()
	}
}

// Run serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}
	errs := make(chan error, len(s.listener))
	for _, l := range s.listener {
		go func() { errs <- srv.Serve(l) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errs:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}
