// Package dispatcher is the Kafka-facing half of FTP Pooler: it consumes
// transfer tasks, leases them to agents over gRPC streams, and publishes one
// outcome per task. cmd/dispatcher is a thin main around Load and Run; tests
// run the same code in-process.
package dispatcher

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/admin"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/intake"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/lease"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/publish"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/rate"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/watermark"
	"github.com/ftp-pooler/ftp-pooler/services/internal/buildinfo"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/status"
	"github.com/ftp-pooler/ftp-pooler/services/internal/telemetry"
	"github.com/ftp-pooler/ftp-pooler/services/internal/tlsfiles"
)

// Options are the command line: file locations and flag overrides.
type Options struct {
	ConfigPath      string
	ConnectionsPath string
	Listen          string
	AdminListen     string
	HTTPListen      string
	InstanceID      string
	ShowVersion     bool
	// CheckConfig validates the files and exits (0 when they are valid).
	CheckConfig bool
}

// ParseFlags reads the command line; FTP_POOLER_CONFIG and
// FTP_POOLER_CONNECTIONS stand in for the file flags.
func ParseFlags(args []string, getenv func(string) string, stderr io.Writer) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("dispatcher", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.ConfigPath, "config", getenv(config.EnvConfig), "config.yaml `path` (env "+config.EnvConfig+")")
	fs.StringVar(&o.ConnectionsPath, "connections", getenv(config.EnvConnections), "connections.ini `path` (env "+config.EnvConnections+")")
	fs.StringVar(&o.Listen, "listen", "", "agents' lease stream `address` (default dispatcher.listen, :7070)")
	fs.StringVar(&o.AdminListen, "admin-listen", "", "admin gRPC `address` (default dispatcher.admin_listen, :7071)")
	fs.StringVar(&o.HTTPListen, "http-listen", "", "/metrics, /healthz, /readyz `address` (default api.host:api.port)")
	fs.StringVar(&o.InstanceID, "instance-id", "", "unique, stable dispatcher `name` (default dispatcher.instance_id or the host name)")
	fs.BoolVar(&o.ShowVersion, "version", false, "print the version and exit")
	fs.BoolVar(&o.CheckConfig, "check-config", false, "validate the configuration files and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: dispatcher --config config.yaml --connections connections.ini [flags]")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, config.EnvHelp(config.RoleDispatcher))
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
	for _, ov := range []struct {
		flag string
		dst  *string
	}{{o.Listen, &cfg.Dispatcher.Listen}, {o.AdminListen, &cfg.Dispatcher.AdminListen}, {o.HTTPListen, &cfg.Dispatcher.HTTPListen}, {o.InstanceID, &cfg.Dispatcher.InstanceID}} {
		if ov.flag != "" {
			*ov.dst = ov.flag
		}
	}
	if cfg.Dispatcher.InstanceID == "" {
		cfg.Dispatcher.InstanceID, _ = os.Hostname()
	}
	if cfg.Dispatcher.HTTPListen == "" {
		cfg.Dispatcher.HTTPListen = net.JoinHostPort(cfg.API.Host, fmt.Sprint(cfg.API.Port))
	}
	if err := cfg.Validate(config.RoleDispatcher); err != nil {
		return cfg, nil, err
	}
	conns, err := config.LoadConnections(o.ConnectionsPath, getenv)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, conns, nil
}

// Addrs are the bound listener addresses, for callers that asked for port 0.
type Addrs struct {
	Lease, Admin, HTTP net.Addr
}

// Run builds a dispatcher and runs it until ctx ends, then shuts it down
// in order; started, if set, is told its listening addresses first.
func Run(ctx context.Context, cfg config.Config, conns *config.Connections, logger *slog.Logger, started func(Addrs)) error {
	d, err := New(ctx, cfg, conns, logger)
	if err != nil {
		return err
	}
	if started != nil {
		started(d.Addrs())
	}
	return d.Run(ctx)
}

// Dispatcher is one dispatcher's parts, built by New in dependency order
// (outcomes: pipeline and publisher; then the scheduler, which finishes
// tasks into the pipeline; then the intake, which feeds the scheduler; then
// the servers) and run by Run.
type Dispatcher struct {
	cfg       config.Config
	logger    *slog.Logger
	tracing   *telemetry.Tracing
	producer  *kafka.Producer
	pipe      *pipeline
	pub       *publish.Publisher
	sched     *lease.Scheduler
	members   *intake.Membership
	in        *intake.Intake
	healthSrv *health.Server
	leaseGRPC *grpc.Server
	adminGRPC *grpc.Server
	httpSrv   *status.Server
	leaseL    net.Listener
	adminL    net.Listener
	addrs     Addrs
	// undo closes what New built, last first; New runs it when a later
	// step fails, Run once the dispatcher has stopped. Parts the shutdown
	// closes itself are skipped once running.
	undo    []func()
	running bool
}

// New builds every part and listens; on error it closes what it built.
func New(ctx context.Context, cfg config.Config, conns *config.Connections, logger *slog.Logger) (_ *Dispatcher, err error) {
	d := &Dispatcher{cfg: cfg, logger: logger.With("dispatcher_id", cfg.Dispatcher.InstanceID)}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	for _, w := range conns.Warnings {
		d.logger.Warn("connections file: " + w)
	}
	m := metrics.New()
	if d.tracing, err = telemetry.Setup(ctx, "ftp-pooler-dispatcher", buildinfo.Version(), os.Getenv); err != nil {
		return nil, err
	}
	d.onClose(func() {
		flush, cancel := context.WithTimeout(context.Background(), cfg.Telemetry.FlushTimeout.D())
		defer cancel()
		_ = d.tracing.Shutdown(flush)
	})
	consumer, err := d.kafkaClients()
	if err != nil {
		return nil, err
	}
	tracker := d.newTracker(m)
	d.pipe = &pipeline{kafka: cfg.Kafka, conns: conns, defaultLimit: cfg.Pool.MaxSessionsPerConnection, metrics: m, logger: d.logger.With("component", "pipeline"),
		now: time.Now, byCode: map[string]uint64{}, rates: rate.New(nil),
		tracing: d.tracing, tracer: d.tracing.Tracer("github.com/ftp-pooler/ftp-pooler/services/dispatcher")}
	d.pub = publish.New(publish.Config{
		InputTopic:    cfg.Kafka.InputTopic,
		Transactional: cfg.Kafka.Delivery == config.DeliveryExactlyOnce,
		Linger:        cfg.Kafka.CommitInterval.D(),
		MaxBatch:      cfg.Kafka.BatchMaxOutcomes,
		RetryBackoff:  time.Duration(cfg.Kafka.BaseBackoffMS) * time.Millisecond,
	}, d.producer, consumer, tracker, m, d.logger)
	d.sched = lease.New(d.leaseConfig(conns), lease.SystemClock, m, d.logger, d.pipe.finish)
	// Until the group's size is known, hold FTP tasks back rather than risk
	// two dispatchers each granting the whole of a connection limit.
	d.sched.SetGroup(0, 0)
	if d.members, err = intake.NewMembership(consumer, cfg.Kafka.InputTopic, cfg.Kafka.ConsumerGroup, clientID(cfg.Dispatcher.InstanceID), d.sched.SetGroup, d.logger); err != nil {
		return nil, err
	}
	d.pipe.sched, d.pipe.pub = d.sched, d.pub
	d.in = intake.New(intake.Config{Topic: cfg.Kafka.InputTopic, MaxBuffered: cfg.Kafka.MaxBufferedTasks, CommittedTimeout: cfg.Kafka.CommittedOffsetsTimeout.D()},
		consumer, tracker, d.pipe, m, d.logger)
	d.in.OnRebalance = d.members.Refresh
	m.SetGauges(metrics.Gauges{
		QueueDepth:      func() float64 { q, _ := d.sched.Counts(); return float64(q) },
		LeasesInFlight:  func() float64 { _, l := d.sched.Counts(); return float64(l) },
		Agents:          func() float64 { return float64(d.sched.Admin().AgentCount()) },
		OldestQueuedAge: func() float64 { return d.sched.Admin().OldestQueuedAge().Seconds() },
		Buffered:        func() float64 { return float64(tracker.Outstanding()) },
	})
	if err := d.servers(conns, tracker, m); err != nil {
		return nil, err
	}
	if err := d.listen(); err != nil {
		return nil, err
	}
	d.logger.Info("dispatcher started", "version", buildinfo.Version(), "lease_address", d.addrs.Lease.String(),
		"admin_address", d.addrs.Admin.String(), "http_address", d.addrs.HTTP.String(), "delivery", cfg.Kafka.Delivery,
		"input_topic", cfg.Kafka.InputTopic, "consumer_group", cfg.Kafka.ConsumerGroup)
	return d, nil
}

// Addrs are where the dispatcher listens.
func (d *Dispatcher) Addrs() Addrs { return d.addrs }

func (d *Dispatcher) onClose(f func()) { d.undo = append(d.undo, f) }

func (d *Dispatcher) close() {
	for i := len(d.undo) - 1; i >= 0; i-- {
		d.undo[i]()
	}
	d.undo = nil
}

// kafkaClients makes the consumer and the producer and forwards their logs.
// Once Run starts, the intake closes the consumer and the shutdown the
// producer; before that, New's undo does.
func (d *Dispatcher) kafkaClients() (*kafka.Consumer, error) {
	consumer, err := newConsumer(d.cfg.Kafka, d.cfg.Dispatcher.InstanceID)
	if err != nil {
		return nil, err
	}
	d.onClose(func() {
		if !d.running {
			consumer.Close()
		}
	})
	if d.producer, err = newProducer(d.cfg.Kafka, d.cfg.Dispatcher.InstanceID); err != nil {
		return nil, err
	}
	d.onClose(func() {
		if !d.running {
			d.producer.Close()
		}
	})
	logCtx, stopLogs := context.WithCancel(context.Background())
	d.onClose(stopLogs)
	kafkaLogger := d.logger.With("component", "kafka")
	go forwardLogs(logCtx, consumer.Logs(), kafkaLogger)
	go forwardLogs(logCtx, d.producer.Logs(), kafkaLogger)
	return consumer, nil
}

// newTracker is the watermark of finished offsets the commits follow.
func (d *Dispatcher) newTracker(m *metrics.Metrics) *watermark.Tracker {
	tracker := watermark.New()
	tracker.Truncated = func(partition int32, left int) {
		m.DoneSetTrimmed.Add(float64(left))
		d.logger.Warn("finished offsets beyond the commit point do not fit the commit's metadata: if the partition moves now, its next owner redoes them",
			"partition", partition, "left_out", left)
	}
	return tracker
}

// leaseConfig is the scheduler's configuration: endpoints' limits, leases,
// retries and breakers.
func (d *Dispatcher) leaseConfig(conns *config.Connections) lease.Config {
	cfg := d.cfg
	endpoints := map[string]lease.Endpoint{}
	for _, id := range conns.IDs() {
		ep, _ := conns.Endpoint(id)
		limit := ep.MaxConnections
		if limit == 0 {
			limit = cfg.Pool.MaxSessionsPerConnection
		}
		le := lease.Endpoint{ID: id, Remote: ep.IsRemote(), Limit: limit}
		if ep.Type == config.TypeSFTP {
			le.Sessions = uint32(ep.SFTP.MaxSessionsPerConnection)
		}
		endpoints[id] = le
	}
	lc := lease.Config{
		DispatcherID:        cfg.Dispatcher.InstanceID,
		TTL:                 cfg.Lease.TTL.D(),
		DetachHold:          cfg.Lease.TTL.D(),
		LeasesPerConnection: uint32(cfg.Lease.LeasesPerConnection),
		Heartbeat:           cfg.Lease.HeartbeatInterval.D(),
		MaxAttempts:         cfg.Retry.MaxAttempts,
		BaseBackoff:         cfg.Retry.BaseBackoff.D(),
		MaxBackoff:          cfg.Retry.MaxBackoff.D(),
		Endpoints:           endpoints,
		LimitRecovery:       cfg.Pool.LimitRecoveryInterval.D(),
		Breaker: lease.BreakerConfig{
			FailureThreshold: cfg.CircuitBreaker.FailureThreshold,
			SuccessThreshold: cfg.CircuitBreaker.SuccessThreshold,
			OpenFor:          time.Duration(cfg.CircuitBreaker.TimeoutSeconds) * time.Second,
			HalfOpenMax:      cfg.CircuitBreaker.HalfOpenMaxCalls,
			MaxOutage:        cfg.Retry.MaxOutage.D(),
		},
	}
	if d.tracing.Enabled {
		lc.Tracer, lc.Propagator = d.pipe.tracer, d.tracing.Propagator
	}
	return lc
}

// servers builds the lease and admin gRPC servers and the HTTP server with
// its readiness checks.
func (d *Dispatcher) servers(conns *config.Connections, tracker *watermark.Tracker, m *metrics.Metrics) error {
	leaseSec, adminSec, err := security(d.cfg.Dispatcher, os.Getenv)
	if err != nil {
		return err
	}
	var grpcOpts []grpc.ServerOption
	if d.tracing.Enabled {
		grpcOpts = append(grpcOpts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(d.tracing.Provider), otelgrpc.WithPropagators(d.tracing.Propagator))))
	}
	d.healthSrv = health.NewServer()
	d.leaseGRPC = newGRPCServer(d.logger, leaseSec, grpcOpts...)
	leasev1.RegisterLeaseServiceServer(d.leaseGRPC, lease.NewServer(d.sched, d.logger))
	healthpb.RegisterHealthServer(d.leaseGRPC, d.healthSrv)
	d.adminGRPC = newGRPCServer(d.logger, adminSec, grpcOpts...)
	adminv1.RegisterAdminServiceServer(d.adminGRPC, admin.NewServer(admin.Sources{
		Scheduler: d.sched, Intake: d.in, Tracker: tracker, Connections: conns, Publishing: d.pub.Pending,
		OutcomesByCode: d.pipe.outcomesByCode, OutcomesPerSecond: d.pipe.rates.PerSecond, Lag: d.in.Lag,
	}))
	healthpb.RegisterHealthServer(d.adminGRPC, d.healthSrv)
	reflection.Register(d.adminGRPC)

	d.httpSrv = status.New(d.logger, m.Registry)
	if d.cfg.Metrics.Pprof {
		d.httpSrv.ServeProfiles()
	}
	d.httpSrv.AddCheck("consumer_group", func(context.Context) error {
		if !d.members.Known() {
			// Measured about a second after the first assignment; ready
			// before it, a dispatcher would hold its first tasks that long.
			return errors.New("consumer group not yet read: no share of the endpoints' connection limits, so nothing can be leased")
		}
		return nil
	})
	d.httpSrv.AddCheck("kafka", func(context.Context) error {
		if !d.in.Ready() {
			return errors.New("not yet assigned partitions by the consumer group")
		}
		return nil
	})
	return nil
}

// listen binds the lease, admin and HTTP listeners.
func (d *Dispatcher) listen() (err error) {
	cfg := d.cfg
	if d.leaseL, err = net.Listen("tcp", cfg.Dispatcher.Listen); err != nil {
		return fmt.Errorf("listen (dispatcher.listen): %w", err)
	}
	d.onClose(func() {
		if !d.running {
			d.leaseL.Close()
		}
	})
	if d.adminL, err = net.Listen("tcp", cfg.Dispatcher.AdminListen); err != nil {
		return fmt.Errorf("admin listen (dispatcher.admin_listen): %w", err)
	}
	d.onClose(func() {
		if !d.running {
			d.adminL.Close()
		}
	})
	if d.addrs.HTTP, err = d.httpSrv.Listen(cfg.Dispatcher.HTTPListen); err != nil {
		return fmt.Errorf("http listen (dispatcher.http_listen): %w", err)
	}
	d.onClose(func() {
		if !d.running {
			d.httpSrv.Close()
		}
	})
	if cfg.Metrics.Port != 0 && cfg.Metrics.Port != cfg.API.Port && cfg.Dispatcher.HTTPListen == net.JoinHostPort(cfg.API.Host, fmt.Sprint(cfg.API.Port)) {
		// The original served Prometheus on metrics.port; keep scrapes working.
		if _, err := d.httpSrv.Listen(net.JoinHostPort(cfg.API.Host, fmt.Sprint(cfg.Metrics.Port))); err != nil {
			d.logger.Warn("not serving metrics on metrics.port", "error", err)
		}
	}
	d.addrs.Lease, d.addrs.Admin = d.leaseL.Addr(), d.adminL.Addr()
	return nil
}

// parts are the contexts of the long-lived parts, so the shutdown stops
// them in order.
type parts struct {
	sched, pub, intake, http        context.CancelFunc
	schedCtx, pubCtx, intakeCtx, hc context.Context
	intakeDone, pubDone             chan struct{}
}

// Run serves until ctx ends or a part fails, then shuts down in order (see
// shutdown); it closes whatever New built.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.running = true
	defer d.close()
	var p parts
	p.schedCtx, p.sched = context.WithCancel(context.Background())
	p.pubCtx, p.pub = context.WithCancel(context.Background())
	p.intakeCtx, p.intake = context.WithCancel(context.Background())
	p.hc, p.http = context.WithCancel(context.Background())
	defer func() { p.sched(); p.pub(); p.intake(); p.http() }()
	p.intakeDone, p.pubDone = make(chan struct{}), make(chan struct{})

	g, gctx := errgroup.WithContext(context.Background())
	g.Go(func() error { return d.sched.Run(p.schedCtx) })
	g.Go(func() error { return d.members.Run(p.intakeCtx) })
	g.Go(func() error { defer close(p.pubDone); return d.pub.Run(p.pubCtx) })
	g.Go(func() error { defer close(p.intakeDone); return d.in.Run(p.intakeCtx) })
	g.Go(func() error { return serve(d.leaseGRPC, d.leaseL) })
	g.Go(func() error { return serve(d.adminGRPC, d.adminL) })
	g.Go(func() error { return d.httpSrv.Run(p.hc) })
	g.Go(func() error {
		select {
		case <-ctx.Done():
			d.logger.Info("shutting down")
		case <-gctx.Done():
			d.logger.Error("a component failed; shutting down")
		}
		d.shutdown(&p)
		return nil
	})
	return g.Wait()
}

// shutdown stops the parts in the order that loses nothing: stop taking
// tasks, drain the agents (dispatcher.drain_timeout), publish and commit
// what finished, leave the consumer group, close the producer, then stop
// serving. The steps after the drain are bounded by dispatcher.shutdown.
func (d *Dispatcher) shutdown(p *parts) {
	bounds := d.cfg.Dispatcher.Shutdown
	d.healthSrv.Shutdown()
	d.in.Stop()
	drain := d.cfg.Dispatcher.DrainTimeout.D()
	d.sched.Drain(drain)
	select {
	case <-d.sched.WaitIdle():
	case <-time.After(drain):
		_, leased := d.sched.Counts()
		d.logger.Warn("drain timed out; the next owner redoes the leases still in flight", "leases", leased)
	}
	flushCtx, cancel := context.WithTimeout(context.Background(), bounds.FinalFlushTimeout.D())
	if err := d.pub.Flush(flushCtx); err != nil {
		d.logger.Warn("final flush incomplete", "error", err)
	}
	cancel()
	p.intake() // closes the consumer: the group rebalances now
	<-p.intakeDone
	p.pub()
	<-p.pubDone
	if n := d.producer.Flush(int(bounds.ProducerFlushTimeout.D().Milliseconds())); n > 0 {
		d.logger.Warn("producer closed with messages in flight", "messages", n)
	}
	d.producer.Close()
	p.sched()
	d.sched.CloseSessions()
	stopGRPC(d.leaseGRPC, bounds.LeaseServerStopTimeout.D())
	stopGRPC(d.adminGRPC, bounds.AdminServerStopTimeout.D())
	p.http()
	d.logger.Info("dispatcher stopped")
}

// security loads the lease stream's and the admin API's TLS and token.
func security(d config.Dispatcher, getenv func(string) string) (lease, admin serverSecurity, err error) {
	if d.TLS.Enabled() {
		if lease.tls, err = tlsfiles.Server(d.TLS); err != nil {
			return lease, admin, fmt.Errorf("dispatcher.tls: %w", err)
		}
	}
	if d.Admin.TLS.Enabled() {
		if admin.tls, err = tlsfiles.Server(d.Admin.TLS); err != nil {
			return lease, admin, fmt.Errorf("dispatcher.admin.tls: %w", err)
		}
	}
	admin.token = getenv(config.EnvAdminToken)
	if d.Admin.TokenFile != "" {
		b, err := os.ReadFile(d.Admin.TokenFile)
		if err != nil {
			return lease, admin, fmt.Errorf("dispatcher.admin.token_file: %w", err)
		}
		admin.token = strings.TrimSpace(string(b))
		if admin.token == "" {
			return lease, admin, fmt.Errorf("dispatcher.admin.token_file: %s is empty", d.Admin.TokenFile)
		}
	}
	return lease, admin, nil
}

func serve(s *grpc.Server, l net.Listener) error {
	if err := s.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
