package session

import leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"

// outbox queues what a stream's jobs, commits and receiver have to say;
// the stream's sender alone writes it to the stream.
type outbox struct {
	queue chan *leasev1.ConnectRequest // nil asks the sender to finish
	gone  chan struct{}                // closed when the sender stopped
}

func newOutbox() *outbox {
	return &outbox{queue: make(chan *leasev1.ConnectRequest, 256), gone: make(chan struct{})}
}

// send queues m for the sender. Once the sender stopped, messages are
// dropped: the dispatcher has taken the stream's leases back anyway.
func (o *outbox) send(m *leasev1.ConnectRequest) {
	select {
	case o.queue <- m:
	case <-o.gone:
	}
}

// finish asks the sender to write what is queued and close its side.
func (o *outbox) finish() { o.send(nil) }

// senderDone is the sender's last act: later messages are dropped.
func (o *outbox) senderDone() { close(o.gone) }

// senderGone is closed once the sender stopped.
func (o *outbox) senderGone() <-chan struct{} { return o.gone }
