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

// Run serves until ctx ends, then shuts down in order: stop intake, drain
// agents, publish and commit what finished, leave the consumer group, stop
// serving. started, if not nil, is called once every listener is bound.
func Run(ctx context.Context, cfg config.Config, conns *config.Connections, logger *slog.Logger, started func(Addrs)) error {
	logger = logger.With("dispatcher_id", cfg.Dispatcher.InstanceID)
	for _, w := range conns.Warnings {
		logger.Warn("connections file: " + w)
	}
	m := metrics.New()
	tracing, err := telemetry.Setup(ctx, "ftp-pooler-dispatcher", buildinfo.Version(), os.Getenv)
	if err != nil {
		return err
	}
	defer func() {
		flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tracing.Shutdown(flush)
	}()

	consumer, err := newConsumer(cfg.Kafka, cfg.Dispatcher.InstanceID)
	if err != nil {
		return err
	}
	producer, err := newProducer(cfg.Kafka, cfg.Dispatcher.InstanceID)
	if err != nil {
		consumer.Close()
		return err
	}
	logCtx, stopLogs := context.WithCancel(context.Background())
	defer stopLogs()
	kafkaLogger := logger.With("component", "kafka")
	go forwardLogs(logCtx, consumer.Logs(), kafkaLogger)
	go forwardLogs(logCtx, producer.Logs(), kafkaLogger)

	tracker := watermark.New()
	tracker.Truncated = func(partition int32, left int) {
		m.DoneSetTrimmed.Add(float64(left))
		logger.Warn("finished offsets beyond the commit point do not fit the commit's metadata: if the partition moves now, its next owner redoes them",
			"partition", partition, "left_out", left)
	}
	p := &pipeline{kafka: cfg.Kafka, conns: conns, defaultLimit: cfg.Pool.MaxSessionsPerConnection, metrics: m, logger: logger.With("component", "pipeline"),
		now: time.Now, byCode: map[string]uint64{}, rates: rate.New(nil),
		tracing: tracing, tracer: tracing.Tracer("github.com/ftp-pooler/ftp-pooler/services/dispatcher")}
	pub := publish.New(publish.Config{
		InputTopic:    cfg.Kafka.InputTopic,
		Transactional: cfg.Kafka.Delivery == config.DeliveryExactlyOnce,
		Linger:        cfg.Kafka.CommitInterval.D(),
		MaxBatch:      cfg.Kafka.BatchMaxOutcomes,
		RetryBackoff:  time.Duration(cfg.Kafka.BaseBackoffMS) * time.Millisecond,
	}, producer, consumer, tracker, m, logger)
	endpoints := map[string]lease.Endpoint{}
	for _, id := range conns.IDs() {
		ep, _ := conns.Endpoint(id)
		limit := ep.MaxConnections
		if limit == 0 {
			limit = cfg.Pool.MaxSessionsPerConnection
		}
		endpoints[id] = lease.Endpoint{ID: id, FTP: ep.Type == config.TypeFTP, Limit: limit}
	}
	leaseCfg := lease.Config{
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
	if tracing.Enabled {
		leaseCfg.Tracer, leaseCfg.Propagator = p.tracer, tracing.Propagator
	}
	sched := lease.New(leaseCfg, lease.SystemClock, m, logger, p.finish)
	// Until the group's size is known, hold FTP tasks back rather than risk
	// two dispatchers each granting the whole of a connection limit.
	sched.SetGroup(0, 0)
	members, err := intake.NewMembership(consumer, cfg.Kafka.InputTopic, cfg.Kafka.ConsumerGroup, clientID(cfg.Dispatcher.InstanceID), sched.SetGroup, logger)
	if err != nil {
		consumer.Close()
		producer.Close()
		return err
	}
	p.sched, p.pub = sched, pub
	in := intake.New(intake.Config{Topic: cfg.Kafka.InputTopic, MaxBuffered: cfg.Kafka.MaxBufferedTasks, CommittedTimeout: 15 * time.Second},
		consumer, tracker, p, m, logger)
	in.OnRebalance = members.Refresh
	m.SetGauges(metrics.Gauges{
		QueueDepth:      func() float64 { q, _ := sched.Counts(); return float64(q) },
		LeasesInFlight:  func() float64 { _, l := sched.Counts(); return float64(l) },
		Agents:          func() float64 { return float64(sched.AgentCount()) },
		OldestQueuedAge: func() float64 { return sched.OldestQueuedAge().Seconds() },
		Buffered:        func() float64 { return float64(tracker.Outstanding()) },
	})

	leaseSec, adminSec, err := security(cfg.Dispatcher, os.Getenv)
	if err != nil {
		consumer.Close()
		producer.Close()
		return err
	}
	var grpcOpts []grpc.ServerOption
	if tracing.Enabled {
		grpcOpts = append(grpcOpts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tracing.Provider), otelgrpc.WithPropagators(tracing.Propagator))))
	}
	healthSrv := health.NewServer()
	leaseGRPC := newGRPCServer(logger, leaseSec, grpcOpts...)
	leasev1.RegisterLeaseServiceServer(leaseGRPC, lease.NewServer(sched, logger))
	healthpb.RegisterHealthServer(leaseGRPC, healthSrv)
	adminGRPC := newGRPCServer(logger, adminSec, grpcOpts...)
	adminv1.RegisterAdminServiceServer(adminGRPC, admin.NewServer(admin.Sources{
		Scheduler: sched, Intake: in, Tracker: tracker, Connections: conns, Publishing: pub.Pending,
		OutcomesByCode: p.outcomesByCode, OutcomesPerSecond: p.rates.PerSecond, Lag: in.Lag,
	}))
	healthpb.RegisterHealthServer(adminGRPC, healthSrv)
	reflection.Register(adminGRPC)

	httpSrv := status.New(logger, m.Registry)
	if cfg.Metrics.Pprof {
		httpSrv.ServeProfiles()
	}
	httpSrv.AddCheck("consumer_group", func(context.Context) error {
		if !members.Known() {
			// Measured about a second after the first assignment; ready
			// before it, a dispatcher would hold its first tasks that long.
			return errors.New("consumer group not yet read: no share of the endpoints' connection limits, so nothing can be leased")
		}
		return nil
	})
	httpSrv.AddCheck("kafka", func(context.Context) error {
		if !in.Ready() {
			return errors.New("not yet assigned partitions by the consumer group")
		}
		return nil
	})

	var addrs Addrs
	leaseL, err := net.Listen("tcp", cfg.Dispatcher.Listen)
	if err != nil {
		return fmt.Errorf("listen (dispatcher.listen): %w", err)
	}
	adminL, err := net.Listen("tcp", cfg.Dispatcher.AdminListen)
	if err != nil {
		leaseL.Close()
		return fmt.Errorf("admin listen (dispatcher.admin_listen): %w", err)
	}
	if addrs.HTTP, err = httpSrv.Listen(cfg.Dispatcher.HTTPListen); err != nil {
		leaseL.Close()
		adminL.Close()
		return fmt.Errorf("http listen (dispatcher.http_listen): %w", err)
	}
	if cfg.Metrics.Port != 0 && cfg.Metrics.Port != cfg.API.Port && cfg.Dispatcher.HTTPListen == net.JoinHostPort(cfg.API.Host, fmt.Sprint(cfg.API.Port)) {
		// The original served Prometheus on metrics.port; keep scrapes working.
		if _, err := httpSrv.Listen(net.JoinHostPort(cfg.API.Host, fmt.Sprint(cfg.Metrics.Port))); err != nil {
			logger.Warn("not serving metrics on metrics.port", "error", err)
		}
	}
	addrs.Lease, addrs.Admin = leaseL.Addr(), adminL.Addr()
	logger.Info("dispatcher started", "version", buildinfo.Version(), "lease_address", addrs.Lease.String(),
		"admin_address", addrs.Admin.String(), "http_address", addrs.HTTP.String(), "delivery", cfg.Kafka.Delivery,
		"input_topic", cfg.Kafka.InputTopic, "consumer_group", cfg.Kafka.ConsumerGroup)
	if started != nil {
		started(addrs)
	}

	// Each part runs under its own context so shutdown can stop them in order.
	schedCtx, stopSched := context.WithCancel(context.Background())
	pubCtx, stopPub := context.WithCancel(context.Background())
	intakeCtx, stopIntake := context.WithCancel(context.Background())
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	defer func() { stopSched(); stopPub(); stopIntake(); stopHTTP() }()

	g, gctx := errgroup.WithContext(context.Background())
	intakeDone, pubDone := make(chan struct{}), make(chan struct{})
	g.Go(func() error { return sched.Run(schedCtx) })
	g.Go(func() error { return members.Run(intakeCtx) })
	g.Go(func() error { defer close(pubDone); return pub.Run(pubCtx) })
	g.Go(func() error { defer close(intakeDone); return in.Run(intakeCtx) })
	g.Go(func() error { return serve(leaseGRPC, leaseL) })
	g.Go(func() error { return serve(adminGRPC, adminL) })
	g.Go(func() error { return httpSrv.Run(httpCtx) })
	g.Go(func() error {
		select {
		case <-ctx.Done():
			logger.Info("shutting down")
		case <-gctx.Done():
			logger.Error("a component failed; shutting down")
		}
		healthSrv.Shutdown()
		in.Stop()
		drain := cfg.Dispatcher.DrainTimeout.D()
		sched.Drain(drain)
		select {
		case <-sched.WaitIdle():
		case <-time.After(drain):
			_, leased := sched.Counts()
			logger.Warn("drain timed out; the next owner redoes the leases still in flight", "leases", leased)
		}
		flushCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := pub.Flush(flushCtx); err != nil {
			logger.Warn("final flush incomplete", "error", err)
		}
		cancel()
		stopIntake() // closes the consumer: the group rebalances now
		<-intakeDone
		stopPub()
		<-pubDone
		if n := producer.Flush(5000); n > 0 {
			logger.Warn("producer closed with messages in flight", "messages", n)
		}
		producer.Close()
		stopSched()
		sched.CloseSessions()
		stopGRPC(leaseGRPC, 5*time.Second)
		stopGRPC(adminGRPC, 2*time.Second)
		stopHTTP()
		logger.Info("dispatcher stopped")
		return nil
	})
	return g.Wait()
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
