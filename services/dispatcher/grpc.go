package dispatcher

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// serverSecurity is how a gRPC server authenticates callers.
type serverSecurity struct {
	tls *tls.Config
	// token, when set, must be sent as "authorization: Bearer <token>".
	token string
}

// newGRPCServer returns a server with our interceptor chain: call logging
// (start and finish only), authentication, and panic recovery, last so it
// sees every panic.
func newGRPCServer(logger *slog.Logger, sec serverSecurity, extra ...grpc.ServerOption) *grpc.Server {
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.StartCall, logging.FinishCall)}
	recoverOpts := []recovery.Option{recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "panic in gRPC handler", "panic", p)
		return status.Error(codes.Internal, "internal error")
	})}
	unary := []grpc.UnaryServerInterceptor{logging.UnaryServerInterceptor(slogAdapter(logger), logOpts...)}
	stream := []grpc.StreamServerInterceptor{logging.StreamServerInterceptor(slogAdapter(logger), logOpts...)}
	if sec.token != "" {
		check := bearer(sec.token)
		unary = append(unary, auth.UnaryServerInterceptor(check))
		stream = append(stream, auth.StreamServerInterceptor(check))
	}
	unary = append(unary, recovery.UnaryServerInterceptor(recoverOpts...))
	stream = append(stream, recovery.StreamServerInterceptor(recoverOpts...))
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		// Agents ping every 10 s so a dead peer is noticed in seconds, not
		// at the next TCP timeout; allow that, and ping idle agents too.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 15 * time.Second, Timeout: 10 * time.Second}),
	}
	if sec.tls != nil {
		opts = append(opts, grpc.Creds(handshakeLogger{TransportCredentials: credentials.NewTLS(sec.tls), logger: logger}))
	}
	return grpc.NewServer(append(opts, extra...)...)
}

// handshakeLogger logs refused TLS handshakes: a client without a valid
// certificate only sees a broken connection, so the reason must be logged
// where the operator looks, on the server.
type handshakeLogger struct {
	credentials.TransportCredentials
	logger *slog.Logger
}

func (h handshakeLogger) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := h.TransportCredentials.ServerHandshake(c)
	if err != nil {
		h.logger.Warn("TLS handshake refused", "peer", c.RemoteAddr().String(), "error", err)
	}
	return conn, info, err
}

func (h handshakeLogger) Clone() credentials.TransportCredentials {
	return handshakeLogger{TransportCredentials: h.TransportCredentials.Clone(), logger: h.logger}
}

// bearer checks the caller's token. Health checks are exempt: Kubernetes
// gRPC probes cannot send metadata.
func bearer(token string) auth.AuthFunc {
	want := []byte(token)
	return func(ctx context.Context) (context.Context, error) {
		if method, ok := grpc.Method(ctx); ok && strings.HasPrefix(method, "/grpc.health.v1.Health/") {
			return ctx, nil
		}
		got, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, "this admin API needs \"authorization: Bearer <token>\"")
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			return nil, status.Error(codes.Unauthenticated, "invalid bearer token")
		}
		return ctx, nil
	}
}

// slogAdapter logs gRPC calls at Debug: a healthy fleet opens few streams,
// and operators polling the admin API should not flood the log.
func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		level := slog.LevelDebug
		if lvl >= logging.LevelWarn {
			level = slog.Level(lvl)
		}
		l.Log(ctx, level, msg, fields...)
	})
}

// stopGRPC stops gracefully, forcing after timeout.
func stopGRPC(s *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		s.Stop()
	}
}
