package pool

import (
	"context"
	"testing"

	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/ftptest"
)

// BenchmarkCheckout measures taking a warm idle connection and giving it
// back: the pool's own cost per transfer.
func BenchmarkCheckout(b *testing.B) {
	srv := ftptest.Start(b)
	p, _ := newSet(b, srv.Endpoint, Config{}).Pool("srv")
	ctx := context.Background()
	c, err := p.Get(ctx)
	if err != nil {
		b.Fatal(err)
	}
	p.Put(c)
	b.ReportAllocs()
	for b.Loop() {
		c, err := p.Get(ctx)
		if err != nil {
			b.Fatal(err)
		}
		p.Put(c)
	}
}
