// Package agent is the transfer half of FTP Pooler: a stateless worker that
// connects to every dispatcher, runs the leases it receives through pooled
// FTP connections, and reports outcomes. cmd/agent is a thin main around
// Load and Run; tests run the same code in-process.
package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/capacity"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/pool"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/remote"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/session"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/shutdown"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/transfer"
	"github.com/ftp-pooler/ftp-pooler/services/internal/buildinfo"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
	"github.com/ftp-pooler/ftp-pooler/services/internal/status"
	"github.com/ftp-pooler/ftp-pooler/services/internal/telemetry"
	"github.com/ftp-pooler/ftp-pooler/services/internal/tlsfiles"
)

// Options are the command line: file locations and flag overrides.
type Options struct {
	ConfigPath      string
	ConnectionsPath string
	Dispatchers     config.StringList
	Slots           int
	HTTPListen      string
	AgentID         string
	ShowVersion     bool
	// CheckConfig validates the files and exits (0 when they are valid).
	CheckConfig bool
}

// ParseFlags reads the command line; FTP_POOLER_CONFIG and
// FTP_POOLER_CONNECTIONS stand in for the file flags.
func ParseFlags(args []string, getenv func(string) string, stderr io.Writer) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.ConfigPath, "config", getenv(config.EnvConfig), "config.yaml `path` (env "+config.EnvConfig+")")
	fs.StringVar(&o.ConnectionsPath, "connections", getenv(config.EnvConnections), "connections.ini `path` (env "+config.EnvConnections+")")
	fs.Var(&o.Dispatchers, "dispatcher", "dispatcher `host:port[,host:port...]` to connect to (default agent.dispatchers)")
	fs.IntVar(&o.Slots, "slots", 0, "transfers to run at once (default agent.slots, 16)")
	fs.StringVar(&o.HTTPListen, "http-listen", "", "/metrics, /healthz, /readyz `address` (default agent.http_listen; empty disables)")
	fs.StringVar(&o.AgentID, "agent-id", "", "unique agent `name` (default agent.agent_id, or host name and process id)")
	fs.BoolVar(&o.ShowVersion, "version", false, "print the version and exit")
	fs.BoolVar(&o.CheckConfig, "check-config", false, "validate the configuration files and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: agent --config config.yaml --connections connections.ini --dispatcher host:port[,host:port...] [flags]")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, config.EnvHelp(config.RoleAgent))
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return o, nil
}

// Load reads and validates the configuration the options point at.
func Load(o Options, getenv func(string) string) (config.Config, *config.Connections, error) {
	if o.ConfigPath == "" {
		return config.Config{}, nil, errors.New("no configuration file: pass --config or set " + config.EnvConfig)
	}
	if o.ConnectionsPath == "" {
		return config.Config{}, nil, errors.New("no connections file: pass --connections or set " + config.EnvConnections)
	}
	cfg, err := config.LoadFile(o.ConfigPath)
	if err != nil {
		return cfg, nil, err
	}
	cfg.ApplyEnv(getenv)
	if len(o.Dispatchers) > 0 {
		cfg.Agent.Dispatchers = o.Dispatchers
	}
	if o.Slots != 0 {
		cfg.Agent.Slots = o.Slots
	}
	if o.HTTPListen != "" {
		cfg.Agent.HTTPListen = o.HTTPListen
	}
	if o.AgentID != "" {
		cfg.Agent.AgentID = o.AgentID
	}
	if cfg.Agent.AgentID == "" {
		host, _ := os.Hostname()
		cfg.Agent.AgentID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if err := cfg.Validate(config.RoleAgent); err != nil {
		return cfg, nil, err
	}
	conns, err := config.LoadConnections(o.ConnectionsPath, getenv)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, conns, nil
}

// Stopper ends an agent's Run in two stages: Graceful takes no new leases
// and lets transfers in flight finish until the drain timeout, then
// releases them; Now releases them at once. cmd/agent calls Graceful on the
// first signal and Now on the second.
type Stopper = shutdown.Stopper

// NewStopper returns a stopper whose graceful stage lasts
// agent.drain_timeout.
func NewStopper(cfg config.Agent) *Stopper { return shutdown.New(cfg.DrainTimeout.D()) }

// Run builds an agent and runs it until stop ends it.
func Run(stop *Stopper, cfg config.Config, conns *config.Connections, logger *slog.Logger) error {
	// Building waits on nothing remote (gRPC clients connect lazily), so
	// a stop during it takes effect when Run starts.
	a, err := New(context.Background(), cfg, conns, logger)
	if err != nil {
		return err
	}
	return a.Run(stop)
}

// Agent is one agent's parts: the connection pools, the transfer engine,
// the slots and quotas its dispatcher sessions share, one session client
// per dispatcher, and the HTTP server.
type Agent struct {
	cfg     config.Config
	logger  *slog.Logger
	metrics *metrics.Metrics
	tracing *telemetry.Tracing
	pools   *pool.Set
	engine  *transfer.Engine
	slots   *capacity.Slots
	clients []*session.Client
	httpSrv *status.Server // nil without agent.http_listen
	// undo closes what New built, last first: on a failed New, or once
	// Run has stopped.
	undo []func()
}

// New builds every part and listens; on error it closes what it built.
func New(ctx context.Context, cfg config.Config, conns *config.Connections, logger *slog.Logger) (_ *Agent, err error) {
	a := &Agent{cfg: cfg, logger: logger.With("agent_id", cfg.Agent.AgentID), metrics: metrics.New()}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	for _, w := range conns.Warnings {
		a.logger.Warn("connections file: " + w)
	}
	if err := a.setupTracing(ctx, cfg.Telemetry.FlushTimeout.D()); err != nil {
		return nil, err
	}
	tracer := a.tracing.Tracer("github.com/ftp-pooler/ftp-pooler/services/agent")
	endpoints, err := a.newPools(conns, tracer)
	if err != nil {
		return nil, err
	}
	if a.engine, err = transfer.NewEngine(conns, a.pools, cfg.Transfer, tracer, a.logger); err != nil {
		return nil, err
	}
	a.onClose(a.engine.Close)
	if err := a.newClients(conns, endpoints, tracer); err != nil {
		return nil, err
	}
	if err := a.listen(); err != nil {
		return nil, err
	}
	a.logger.Info("agent started", "version", buildinfo.Version(), "slots", cfg.Agent.Slots,
		"dispatchers", cfg.Agent.Dispatchers.String(), "endpoints", conns.IDs())
	return a, nil
}

func (a *Agent) onClose(f func()) { a.undo = append(a.undo, f) }

// setupTracing starts the trace exporter; closing flushes the last traces
// for up to flushTimeout.
func (a *Agent) setupTracing(ctx context.Context, flushTimeout time.Duration) (err error) {
	if a.tracing, err = telemetry.Setup(ctx, "ftp-pooler-agent", buildinfo.Version(), os.Getenv); err != nil {
		return err
	}
	a.onClose(func() {
		flush, cancel := context.WithTimeout(context.Background(), flushTimeout)
		defer cancel()
		_ = a.tracing.Shutdown(flush)
	})
	return nil
}

func (a *Agent) close() {
	for i := len(a.undo) - 1; i >= 0; i-- {
		a.undo[i]()
	}
	a.undo = nil
}

// newPools makes a connection pool per FTP and SFTP endpoint and their
// gauges. An SFTP endpoint whose key or host keys cannot be read stops
// start-up.
func (a *Agent) newPools(conns *config.Connections, tracer trace.Tracer) ([]*config.Endpoint, error) {
	cfg, m := a.cfg, a.metrics
	var endpoints []*config.Endpoint
	for _, id := range conns.IDs() {
		ep, _ := conns.Endpoint(id)
		endpoints = append(endpoints, ep)
	}
	a.pools = pool.NewSet(pool.Config{
		MaxTotal:    cfg.Pool.MaxSessionsPerPod,
		DefaultMax:  cfg.Pool.MaxSessionsPerConnection,
		IdleTimeout: time.Duration(cfg.Pool.SessionTimeoutSeconds) * time.Second,
		CheckAfter:  cfg.Pool.CheckIdleAfter.D(),
		BusyWait:    cfg.Lease.ConnectionWait.D(),
	}, endpoints, func(ep *config.Endpoint) pool.Dialer {
		return &remote.Dialer{
			Endpoint:       ep,
			ConnectTimeout: time.Duration(cfg.Transfer.ConnectTimeoutSeconds) * time.Second,
			IdleTimeout:    cfg.Transfer.IdleTimeout.D(),
			BufferSize:     cfg.Transfer.BufferSize,
		}
	}, pool.Hooks{Tracer: tracer, Dialed: func(ep string, d time.Duration, err error) {
		m.DialDuration.WithLabelValues(ep).Observe(d.Seconds())
		if err != nil {
			m.DialFailures.WithLabelValues(ep).Inc()
		}
	}}, a.logger)
	for _, ep := range endpoints {
		if ep.Type != config.TypeSFTP {
			continue
		}
		mux, err := newSFTPMux(ep, cfg, a.logger.With("component", "sftp"))
		if err != nil {
			return nil, fmt.Errorf("%s: [%s]: %w", conns.Path, ep.ID, err)
		}
		pool.Add(a.pools, ep, mux, ep.SFTP.MaxSessionsPerConnection)
	}
	m.PoolGauges(func() []metrics.PoolState {
		var out []metrics.PoolState
		for _, s := range a.pools.Stats() {
			out = append(out, metrics.PoolState{Endpoint: s.Endpoint, Idle: s.Idle, Busy: s.Busy, Limit: s.Max})
		}
		return out
	})
	return endpoints, nil
}

// newClients makes the slots and quotas the sessions share and a session
// client per dispatcher.
func (a *Agent) newClients(conns *config.Connections, endpoints []*config.Endpoint, tracer trace.Tracer) error {
	cfg, m := a.cfg, a.metrics
	a.slots = capacity.NewSlots(cfg.Agent.Slots)
	var remoteEndpoints []string
	for _, ep := range endpoints {
		if ep.IsRemote() {
			remoteEndpoints = append(remoteEndpoints, ep.ID)
		}
	}
	quotas := capacity.NewQuotas(poolReporter{a.pools}, remoteEndpoints)
	m.Slots.Set(float64(cfg.Agent.Slots))
	host, _ := os.Hostname()
	scfg := session.Config{
		AgentID: cfg.Agent.AgentID, Version: buildinfo.Version(), Hostname: host,
		CommitTimeout: cfg.Lease.CommitTimeout.D(), MaxBackoff: cfg.Agent.ReconnectMaxBackoff.D(),
		Tracer: tracer, Propagator: a.tracing.Propagator,
	}
	creds := insecure.NewCredentials()
	if cfg.Agent.TLS.Enabled() {
		tcfg, err := tlsfiles.Client(cfg.Agent.TLS)
		if err != nil {
			return fmt.Errorf("agent.tls: %w", err)
		}
		creds = credentials.NewTLS(tcfg)
	}
	for _, addr := range cfg.Agent.Dispatchers {
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(creds),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		)
		if err != nil {
			return fmt.Errorf("dispatcher %s: %w", addr, err)
		}
		a.onClose(func() { _ = conn.Close() })
		c := session.NewClient(scfg, addr, conn, a.engine, a.slots, quotas, m, a.logger)
		c.Observe = a.observe(conns)
		a.clients = append(a.clients, c)
	}
	return nil
}

// observe counts each finished transfer in the metrics.
func (a *Agent) observe(conns *config.Connections) func(*transfer.Job, *leasev1.Outcome) {
	m := a.metrics
	return func(job *transfer.Job, o *leasev1.Outcome) {
		dir := direction(conns, job.Lease.Transfer)
		code := ""
		st := "success"
		if o.Status != leasev1.Status_STATUS_SUCCEEDED {
			st, code = "failed", failure.Name(o.ErrorCode)
		}
		m.Transfers.WithLabelValues(dir, st, code).Inc()
		m.Bytes.WithLabelValues(dir, job.Lease.Transfer.SrcId, job.Lease.Transfer.DstId).Add(float64(o.BytesTransferred))
		m.Duration.WithLabelValues(dir).Observe(o.Duration.AsDuration().Seconds())
	}
}

// listen binds agent.http_listen, when set.
func (a *Agent) listen() error {
	if a.cfg.Agent.HTTPListen == "" {
		return nil
	}
	a.httpSrv = status.New(a.logger, a.metrics.Registry)
	if a.cfg.Metrics.Pprof {
		a.httpSrv.ServeProfiles()
	}
	a.httpSrv.AddCheck("dispatchers", func(context.Context) error {
		if a.slots.Connected() == 0 {
			return errors.New("not connected to any dispatcher")
		}
		return nil
	})
	addr, err := a.httpSrv.Listen(a.cfg.Agent.HTTPListen)
	if err != nil {
		return fmt.Errorf("http listen (agent.http_listen): %w", err)
	}
	a.logger.Info("serving metrics and health", "http_address", addr.String())
	return nil
}

// Run serves the dispatchers until stop ends it (see drainOnStop), and
// closes what New built.
func (a *Agent) Run(stop *Stopper) error {
	defer a.close()
	// Run waits for drainOnStop: no shutdown line may follow "agent
	// stopped".
	sessionsDone, drainDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(drainDone)
		a.drainOnStop(stop, sessionsDone)
	}()

	poolCtx, stopPools := context.WithCancel(context.Background())
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	g := new(errgroup.Group)
	g.Go(func() error { return a.pools.Run(poolCtx) })
	if a.httpSrv != nil {
		g.Go(func() error { return a.httpSrv.Run(httpCtx) })
	}
	var sessions errgroup.Group
	for _, c := range a.clients {
		sessions.Go(func() error { return c.Run(stop) })
	}
	err := sessions.Wait()
	close(sessionsDone)
	<-drainDone
	stopPools()
	stopHTTP()
	if gerr := g.Wait(); err == nil {
		err = gerr
	}
	a.logger.Info("agent stopped")
	return err
}

// drainOnStop closes every credit window once stop is stopping, and says
// when transfers in flight are released, unless the sessions ended first.
func (a *Agent) drainOnStop(stop *Stopper, sessionsDone <-chan struct{}) {
	select {
	case <-stop.Stopping():
	case <-sessionsDone:
		return
	}
	select {
	case <-sessionsDone:
		return // both were ready
	default:
	}
	a.slots.Drain()
	a.logger.Info("shutting down: no new leases; waiting for transfers in flight", "drain_timeout", stop.DrainTimeout())
	select {
	case <-stop.Abort():
		if errors.Is(stop.Cause(), shutdown.ErrDrainTimeout) {
			a.logger.Warn("drain timeout: releasing transfers still running")
		} else {
			a.logger.Warn("second signal: releasing transfers still running")
		}
	case <-sessionsDone:
	}
}

// poolReporter adapts the pool set to what sessions report.
type poolReporter struct{ *pool.Set }

func (p poolReporter) Report() []*leasev1.EndpointPool {
	stats := p.Stats()
	out := make([]*leasev1.EndpointPool, 0, len(stats))
	for _, s := range stats {
		out = append(out, &leasev1.EndpointPool{EndpointId: s.Endpoint, Open: uint32(s.Connections), Idle: uint32(s.IdleConnections), Quirks: s.Quirks, HostKey: s.HostKey,
			SessionsPerConnection: uint32(s.SessionsPerConnection)})
	}
	return out
}

// direction names the kind of transfer for metrics.
func direction(conns *config.Connections, t *leasev1.TransferSpec) string {
	src, _ := conns.Endpoint(t.SrcId)
	dst, _ := conns.Endpoint(t.DstId)
	if src == nil || dst == nil {
		return "unknown"
	}
	switch {
	case src.IsRemote() && dst.Type == config.TypeLocal:
		return "download"
	case src.Type == config.TypeLocal && dst.IsRemote():
		return "upload"
	case src.IsRemote():
		return "relay"
	}
	return "copy"
}
