package remote

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// An exchange begun with a context already cancelled must not reach the
// server: the connection is marked broken before op returns, not whenever
// context.AfterFunc's goroutine gets to run.
func TestOpOnACancelledContextBreaksTheConnectionAtOnce(t *testing.T) {
	var released atomic.Bool
	d := &Dialer{Endpoint: lingeringServer(t, 0, &released), ConnectTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second}
	c, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := c.op(ctx)
	broken := c.Broken()
	done()
	if !broken {
		t.Fatal("op on a cancelled context left the connection usable")
	}
	if err := c.NoOp(ctx); err == nil {
		t.Fatal("NOOP on a cancelled context succeeded")
	}
}
