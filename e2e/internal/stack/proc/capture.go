package proc

import (
	"bytes"
	"sync"
)

// Capture collects what a child writes (its stderr) while it runs, and
// can be read meanwhile; it keeps the first 64 KiB.
type Capture struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.b.Len() > 64<<10 {
		return len(p), nil
	}
	return c.b.Write(p)
}

func (c *Capture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}
