package main

// The pipeline ceiling: Kafka → a real bin/dispatcher → no-op agents →
// outcomes on Kafka, exactly-once. It is what the dispatcher and Kafka cost
// per task with no transfer at all, the most any workload of small files
// could reach on this machine.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
)

// noopAgents are agents that speak the lease protocol as bin/agent does
// (hello, credit, quota acknowledgements, a fenced commit before the
// result) but move nothing: each lease is committed at once with the
// source size it claims, and reported succeeded once approved.
type noopAgents struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
}

const noopBytes = 20

// startNoopAgents connects n no-op agents, each with window leases in
// flight, to the dispatcher's lease address.
func startNoopAgents(addr, prefix string, n, window int) (*noopAgents, error) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &noopAgents{cancel: cancel}
	for i := range n {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			a.stop()
			return nil, err
		}
		stream, err := leasev1.NewLeaseServiceClient(conn).Connect(ctx)
		if err != nil {
			_ = conn.Close()
			a.stop()
			return nil, err
		}
		hello := &leasev1.Hello{AgentId: fmt.Sprintf("%s-noop-%d", prefix, i+1), Version: "bench-noop", Slots: uint32(window), Hostname: "bench"}
		for _, m := range []*leasev1.ConnectRequest{
			{Message: &leasev1.ConnectRequest_Hello{Hello: hello}},
			{Message: &leasev1.ConnectRequest_Credit{Credit: &leasev1.Credit{Window: uint32(window)}}},
			{Message: &leasev1.ConnectRequest_PoolReport{PoolReport: &leasev1.PoolReport{}}},
		} {
			if err := stream.Send(m); err != nil {
				_ = conn.Close()
				a.stop()
				return nil, fmt.Errorf("no-op agent: %w", err)
			}
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer conn.Close()
			if err := serveNoop(stream); err != nil && ctx.Err() == nil {
				a.mu.Lock()
				a.err = errors.Join(a.err, err)
				a.mu.Unlock()
			}
		}()
	}
	return a, nil
}

// serveNoop answers one stream until it ends. Sends happen only here, so
// the stream has a single sender as gRPC requires.
func serveNoop(stream leasev1.LeaseService_ConnectClient) error {
	started := map[string]time.Time{}
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var reply *leasev1.ConnectRequest
		switch {
		case m.GetLease() != nil:
			l := m.GetLease()
			started[l.LeaseId] = time.Now()
			reply = &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Commit{Commit: &leasev1.Commit{LeaseId: l.LeaseId, Token: l.Token, Bytes: noopBytes}}}
		case m.GetCommitDecision() != nil:
			d := m.GetCommitDecision()
			o := &leasev1.Outcome{Status: leasev1.Status_STATUS_SUCCEEDED, BytesTransferred: noopBytes, SourceSize: noopBytes}
			if !d.Approved {
				o = &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorMessage: "commit refused: " + d.Reason}
			}
			if t, ok := started[d.LeaseId]; ok {
				o.Duration = durationpb.New(time.Since(t))
				delete(started, d.LeaseId)
			}
			reply = &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Result{Result: &leasev1.Result{LeaseId: d.LeaseId, Token: d.Token, Outcome: o}}}
		case m.GetQuota() != nil:
			// Nothing is ever opened, so every quota is met at once.
			reply = &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_PoolReport{PoolReport: &leasev1.PoolReport{QuotaSeq: m.GetQuota().Seq}}}
		case m.GetDrain() != nil:
			return stream.CloseSend()
		}
		if reply != nil {
			if err := stream.Send(reply); err != nil {
				return err
			}
		}
	}
}

// stop ends the streams and returns what went wrong on them.
func (a *noopAgents) stop() error {
	a.cancel()
	a.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// ceiling measures the pipeline ceiling, reps times.
func (b *bench) ceiling() error {
	w := workload{name: "w20B", count: max(1, 50_000/b.opts.divide), size: noopBytes}
	s, err := b.startStack(stackOpts{name: "ceiling", delivery: "exactly_once", conns: b.opts.conns})
	if err != nil {
		return err
	}
	defer s.stop()
	const agents, window = 4, 256
	noop, err := startNoopAgents(s.Dispatcher.Lease, s.opts.name, agents, window)
	if err != nil {
		return err
	}
	if err := s.WaitReady(agents, time.Minute); err != nil {
		return errors.Join(err, noop.stop())
	}
	b.res.ceilingCount = w.count
	for rep := range b.opts.reps {
		smp, err := b.runOurs(s, w, noopLocal, w.count)
		if err != nil {
			return errors.Join(err, noop.stop())
		}
		b.res.ceiling = append(b.res.ceiling, smp)
		b.logf("pipeline ceiling %d/%d: %.0f tasks/s, dispatcher %.3f s, Kafka %.3f s per 1,000", rep+1, b.opts.reps, smp.rate, smp.cpuD, smp.cpuKafka)
	}
	return noop.stop()
}
