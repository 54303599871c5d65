package remote

import "sync/atomic"

// Quirks a server shows on one connection are remembered for its endpoint:
// later connections skip what it refuses, and operators see them in
// ListEndpoints. Everything else the suite has met (a wrong PASV address,
// multi-line replies, a slow banner, SIZE refused in ASCII mode, a close
// after each transfer, 226 before the last data bytes) needs no memory:
// every connection copes with it as it comes.

// Quirk is a behaviour of a server, detected on one of its connections.
type Quirk uint32

// The quirks remembered.
const (
	// QuirkNoEPSV: the server refused EPSV, so PASV is used; later
	// connections skip EPSV (one round trip each).
	QuirkNoEPSV Quirk = 1 << iota
	// QuirkNoSize: the server has no SIZE; sizes are known only when a
	// transfer ends, and Exists lists the directory.
	QuirkNoSize
)

var quirkNames = []struct {
	q    Quirk
	name string
}{
	{QuirkNoEPSV, "EPSV refused: PASV used"},
	{QuirkNoSize, "no SIZE: sizes known when a transfer ends; existence checked by listing"},
}

// Names describes the quirks in q, for reports.
func (q Quirk) Names() []string {
	var out []string
	for _, n := range quirkNames {
		if q&n.q != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// quirks is an endpoint's memory, shared by its Dialer and every Conn it made.
type quirks struct {
	bits atomic.Uint32
	// announcesSize: the last download from the start had its size in
	// RETR's reply, so the next skips SIZE (announce.go). Not a quirk, so
	// not reported: most servers do it.
	announcesSize atomic.Bool
}

func (m *quirks) add(q Quirk) { m.bits.Or(uint32(q)) }

func (m *quirks) has(q Quirk) bool { return m.bits.Load()&uint32(q) != 0 }

// Quirks reports what the endpoint's connections have shown so far.
func (d *Dialer) Quirks() Quirk { return Quirk(d.learned.bits.Load()) }

// QuirkNames describes Quirks, for the pool's reports.
func (d *Dialer) QuirkNames() []string { return d.Quirks().Names() }
