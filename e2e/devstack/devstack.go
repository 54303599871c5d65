// Package devstack starts the embedded stand-ins FTP Pooler needs when no
// real Kafka or FTP server is around: a Kafka-protocol broker (franz-go's
// kfake) and an FTP server (goftp.io/server) over a directory, both on
// loopback. The demo and the in-process integration tests use it; the
// end-to-end suite uses real Apache Kafka and real FTP servers instead.
package devstack

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	ftpserver "goftp.io/server/v2"
	"goftp.io/server/v2/driver/file"
)

// Topics are the topic names and partition counts of the default config.
var Topics = []struct {
	Name       string
	Partitions int32
}{
	{"ftp-tasks", 6},
	{"ftp-results", 3},
	{"ftp-failures", 3},
	{"ftp-tasks-dlq", 3},
}

// Broker is an in-process Kafka-protocol broker.
type Broker struct {
	cluster *kfake.Cluster
	// Addr is host:port for bootstrap.servers.
	Addr string
}

// StartBroker starts a one-node broker on a free loopback port (or port,
// when not 0) with the default topics.
func StartBroker(port int) (*Broker, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.AllowAutoTopicCreation(),
		// Room for large records (dead letters of 1 MiB junk), as the
		// e2e broker is configured.
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "16777216"}),
	}
	for _, t := range Topics {
		opts = append(opts, kfake.SeedTopics(t.Partitions, t.Name))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker: %w", err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) == 0 {
		c.Close()
		return nil, errors.New("embedded broker has no listener")
	}
	return &Broker{cluster: c, Addr: addrs[0]}, nil
}

// Close stops the broker.
func (b *Broker) Close() { b.cluster.Close() }

// FTPServer is an in-process FTP server over a directory.
type FTPServer struct {
	srv *ftpserver.Server
	l   net.Listener
	// Addr is 127.0.0.1:port; Host and Port split it.
	Addr string
	Host string
	Port int
	// Root is the directory served as "/".
	Root string
	// Throttle, when positive, limits each download to that many bytes per
	// second, for tests that need a transfer to take a while.
	Throttle atomic.Int64
	done     chan error
}

// throttlingDriver paces downloads.
type throttlingDriver struct {
	ftpserver.Driver
	s *FTPServer
}

func (d *throttlingDriver) GetFile(ctx *ftpserver.Context, path string, offset int64) (int64, io.ReadCloser, error) {
	n, rc, err := d.Driver.GetFile(ctx, path, offset)
	if rate := d.s.Throttle.Load(); err == nil && rate > 0 {
		return n, &paced{ReadCloser: rc, rate: rate, start: time.Now()}, nil
	}
	return n, rc, err
}

// paced reads no faster than rate bytes per second.
type paced struct {
	io.ReadCloser
	rate  int64
	start time.Time
	sent  int64
}

func (p *paced) Read(b []byte) (int, error) {
	if len(b) > 16<<10 {
		b = b[:16<<10]
	}
	n, err := p.ReadCloser.Read(b)
	p.sent += int64(n)
	if ahead := time.Duration(float64(p.sent)/float64(p.rate)*float64(time.Second)) - time.Since(p.start); ahead > 0 {
		time.Sleep(ahead)
	}
	return n, err
}

// StartFTP serves root on a free loopback port to one user.
func StartFTP(root, user, password string) (*FTPServer, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	drv, err := file.NewDriver(root)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	s := &FTPServer{Root: root, done: make(chan error, 1)}
	srv, err := ftpserver.NewServer(&ftpserver.Options{
		Name:     "ftp-pooler devstack",
		Driver:   &throttlingDriver{Driver: drv, s: s},
		Auth:     &ftpserver.SimpleAuth{Name: user, Password: password},
		Perm:     ftpserver.NewSimplePerm("ftp", "ftp"),
		Hostname: "127.0.0.1",
		Port:     port,
		PublicIP: "127.0.0.1",
		Logger:   &ftpserver.DiscardLogger{},
	})
	if err != nil {
		l.Close()
		return nil, err
	}
	s.srv, s.l, s.Addr, s.Host, s.Port = srv, l, l.Addr().String(), "127.0.0.1", port
	go func() { s.done <- srv.Serve(l) }()
	return s, nil
}

// Close stops accepting connections. It closes the listener rather than
// calling goftp's Shutdown, which races with a Serve that just started.
func (s *FTPServer) Close() error {
	err := s.l.Close()
	<-s.done
	return err
}
