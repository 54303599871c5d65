package remote

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
)

// lingeringServer logs anyone in and, on QUIT, answers only after linger,
// then closes: a server slow to let a connection go. released is set just
// before it closes its end.
func lingeringServer(t *testing.T, linger time.Duration, released *atomic.Bool) *config.Endpoint {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		fmt.Fprint(c, "220 hi\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch strings.ToUpper(strings.Fields(line + " x")[0]) {
			case "USER":
				fmt.Fprint(c, "331 password\r\n")
			case "PASS":
				fmt.Fprint(c, "230 in\r\n")
			case "FEAT":
				fmt.Fprint(c, "500 no\r\n")
			case "QUIT":
				time.Sleep(linger)
				fmt.Fprint(c, "221 bye\r\n")
				released.Store(true)
				return
			default:
				fmt.Fprint(c, "200 ok\r\n")
			}
		}
	}()
	return &config.Endpoint{ID: "srv", Type: config.TypeFTP, Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, User: "u"}
}

// Close returns once the server has let the connection go: the pool frees
// the slot right after, and a login on it must not find the server still
// holding the old one (one over max_connections, counted on the server).
func TestCloseWaitsForTheServerToLetGo(t *testing.T) {
	var released atomic.Bool
	d := &Dialer{Endpoint: lingeringServer(t, 200*time.Millisecond, &released), ConnectTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second}
	c, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if !released.Load() {
		t.Fatal("Close returned while the server still held the connection")
	}
}

// A server that never lets go costs at most closeWait.
func TestCloseGivesUpOnAServerThatHoldsOn(t *testing.T) {
	var released atomic.Bool
	d := &Dialer{Endpoint: lingeringServer(t, time.Minute, &released), ConnectTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second}
	c, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = c.Close()
	if d := time.Since(start); d > closeWait+500*time.Millisecond {
		t.Fatalf("Close took %s, more than closeWait %s", d, closeWait)
	}
}
