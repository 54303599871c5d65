// Package admin serves the operator's gRPC API on a dispatcher.
package admin

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/lease"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/watermark"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
)

// Intake is the part of the intake the API steers.
type Intake interface {
	Pause()
	Resume()
	Paused() bool
}

// Sources are what the API reads.
type Sources struct {
	Scheduler         *lease.Scheduler
	Intake            Intake
	Tracker           *watermark.Tracker
	Connections       *config.Connections
	Publishing        func() int
	OutcomesByCode    func() map[string]uint64
	OutcomesPerSecond func() map[string]float64
	Lag               func() map[int32]int64
}

// Server implements AdminService.
type Server struct {
	adminv1.UnimplementedAdminServiceServer
	src    Sources
	sched  *lease.Admin
	events *lease.Events
}

// NewServer returns the admin API over src.
func NewServer(src Sources) *Server {
	return &Server{src: src, sched: src.Scheduler.Admin(), events: src.Scheduler.Events()}
}

// toStatus maps scheduler errors to gRPC codes in one place.
func toStatus(err error, field, value string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, lease.ErrUnknownTask):
		return status.Errorf(codes.NotFound, "%s %q: no such task on this dispatcher (it may belong to another dispatcher's partitions, or finished long ago)", field, value)
	case errors.Is(err, lease.ErrUnknownEndpoint):
		return status.Errorf(codes.NotFound, "%s %q: no such endpoint in the connections file", field, value)
	case errors.Is(err, lease.ErrUnknownAgent):
		return status.Errorf(codes.NotFound, "%s %q: no such agent connected", field, value)
	case errors.Is(err, lease.ErrTaskFinished):
		return status.Errorf(codes.FailedPrecondition, "%s %q: the task already finished", field, value)
	}
	return status.Error(codes.Internal, err.Error())
}

func required(field, value string) error {
	if strings.TrimSpace(value) == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	}
	return nil
}

// ListAgents lists the agents connected to this dispatcher.
func (s *Server) ListAgents(context.Context, *adminv1.ListAgentsRequest) (*adminv1.ListAgentsResponse, error) {
	resp := &adminv1.ListAgentsResponse{}
	for _, a := range s.sched.Agents() {
		resp.Agents = append(resp.Agents, &adminv1.Agent{
			AgentId: a.AgentID, Address: a.Address, Version: a.Version, Hostname: a.Hostname,
			Slots: a.Slots, Window: a.Window, InFlight: a.InFlight,
			ConnectedSince: timestamppb.New(a.ConnectedSince), Draining: a.Draining,
		})
	}
	return resp, nil
}

// ListLeases lists the leases in flight.
func (s *Server) ListLeases(context.Context, *adminv1.ListLeasesRequest) (*adminv1.ListLeasesResponse, error) {
	resp := &adminv1.ListLeasesResponse{}
	for _, l := range s.sched.Leases() {
		resp.Leases = append(resp.Leases, &adminv1.LeaseInfo{
			LeaseId: l.LeaseID, Token: l.Token, TaskId: l.TaskID, AgentId: l.AgentID, Attempt: l.Attempt,
			BytesDone: l.BytesDone, BytesTotal: l.BytesTotal, BytesPerSecond: l.BytesPerSecond,
			LeasedAt: timestamppb.New(l.LeasedAt),
			Src:      l.Spec.SrcId + ":" + l.Spec.SrcPath, Dst: l.Spec.DstId + ":" + l.Spec.DstPath,
		})
	}
	return resp, nil
}

// GetTask shows a task's state.
func (s *Server) GetTask(_ context.Context, req *adminv1.GetTaskRequest) (*adminv1.GetTaskResponse, error) {
	if err := required("task_id", req.TaskId); err != nil {
		return nil, err
	}
	v, ok := s.sched.TaskInfo(req.TaskId)
	if !ok {
		return nil, toStatus(lease.ErrUnknownTask, "task_id", req.TaskId)
	}
	info := &adminv1.TaskInfo{
		TaskId: v.ID, State: taskState(v.State), Partition: v.Key.Partition, Offset: v.Key.Offset,
		Attempt: v.Attempt, AgentId: v.AgentID, BytesDone: v.BytesDone, BytesTotal: v.BytesTotal,
		LastErrorCode: v.LastCode, LastErrorMessage: v.LastMessage, OutcomeStatus: v.OutcomeStatus,
		ReceivedAt: timestamppb.New(v.ReceivedAt),
	}
	if v.Spec != nil {
		info.Src, info.Dst = v.Spec.SrcId+":"+v.Spec.SrcPath, v.Spec.DstId+":"+v.Spec.DstPath
	}
	return &adminv1.GetTaskResponse{Task: info}, nil
}

func taskState(st lease.TaskState) adminv1.TaskState {
	switch st {
	case lease.TaskQueued:
		return adminv1.TaskState_TASK_STATE_QUEUED
	case lease.TaskLeased:
		return adminv1.TaskState_TASK_STATE_LEASED
	case lease.TaskDone:
		return adminv1.TaskState_TASK_STATE_DONE
	}
	return adminv1.TaskState_TASK_STATE_UNSPECIFIED
}

// CancelTask cancels a queued or leased task.
func (s *Server) CancelTask(_ context.Context, req *adminv1.CancelTaskRequest) (*adminv1.CancelTaskResponse, error) {
	if err := required("task_id", req.TaskId); err != nil {
		return nil, err
	}
	reason := req.Reason
	if reason == "" {
		reason = "no reason given"
	}
	prev, err := s.sched.Cancel(req.TaskId, reason)
	if err != nil {
		return nil, toStatus(err, "task_id", req.TaskId)
	}
	return &adminv1.CancelTaskResponse{PreviousState: taskState(prev)}, nil
}

// DrainAgent stops leasing to an agent.
func (s *Server) DrainAgent(_ context.Context, req *adminv1.DrainAgentRequest) (*adminv1.DrainAgentResponse, error) {
	if err := required("agent_id", req.AgentId); err != nil {
		return nil, err
	}
	n, err := s.sched.DrainAgent(req.AgentId)
	if err != nil {
		return nil, toStatus(err, "agent_id", req.AgentId)
	}
	return &adminv1.DrainAgentResponse{InFlight: uint32(n)}, nil
}

// PauseIntake stops reading tasks.
func (s *Server) PauseIntake(context.Context, *adminv1.PauseIntakeRequest) (*adminv1.PauseIntakeResponse, error) {
	s.src.Intake.Pause()
	return &adminv1.PauseIntakeResponse{}, nil
}

// ResumeIntake resumes reading tasks.
func (s *Server) ResumeIntake(context.Context, *adminv1.ResumeIntakeRequest) (*adminv1.ResumeIntakeResponse, error) {
	s.src.Intake.Resume()
	return &adminv1.ResumeIntakeResponse{}, nil
}

// GetStats shows the dispatcher's counters.
func (s *Server) GetStats(context.Context, *adminv1.GetStatsRequest) (*adminv1.GetStatsResponse, error) {
	queued, leased := s.src.Scheduler.Counts()
	resp := &adminv1.GetStatsResponse{
		Queued:            uint32(queued),
		Leased:            uint32(leased),
		Publishing:        uint32(s.src.Publishing()),
		OldestQueuedAge:   durationpb.New(s.sched.OldestQueuedAge()),
		IntakePaused:      s.src.Intake.Paused(),
		OutcomesByCode:    s.src.OutcomesByCode(),
		OutcomesPerSecond: s.src.OutcomesPerSecond(),
		Agents:            uint32(s.sched.AgentCount()),
	}
	lag := s.src.Lag()
	for _, p := range s.src.Tracker.Snapshot() {
		resp.Partitions = append(resp.Partitions, &adminv1.PartitionBacklog{
			Partition: p.Partition, Outstanding: uint32(p.Outstanding), CommittedOffset: p.Committed, Lag: lag[p.Partition],
		})
	}
	return resp, nil
}

// ListEndpoints shows every endpoint's connections and state.
func (s *Server) ListEndpoints(context.Context, *adminv1.ListEndpointsRequest) (*adminv1.ListEndpointsResponse, error) {
	resp := &adminv1.ListEndpointsResponse{}
	for _, v := range s.sched.Endpoints() {
		info := &adminv1.EndpointInfo{
			EndpointId: v.ID, Type: "local", Limit: uint32(v.Limit), Share: uint32(v.Share), Granted: uint32(v.Granted),
			Busy: uint32(v.Busy), Idle: uint32(v.Idle), Paused: v.Paused, Queued: uint32(v.Queued),
			ConsecutiveFailures: uint32(v.ConsecutiveFailures), LastError: v.LastError,
			ConfiguredLimit: uint32(v.ConfiguredLimit), LimitReason: v.LimitReason, Quirks: v.Quirks,
			HostKeys: v.HostKeys,
		}
		if ep, ok := s.src.Connections.Endpoint(v.ID); ok {
			if ep.IsRemote() {
				info.Type, info.Address = string(ep.Type), ep.Address()
				info.Breaker = breakerState(v.Breaker)
			} else {
				info.Address, info.Limit, info.ConfiguredLimit = ep.BasePath, 0, 0
			}
		}
		if !v.LastErrorAt.IsZero() {
			info.LastErrorAt = timestamppb.New(v.LastErrorAt)
		}
		if !v.LimitChangedAt.IsZero() {
			info.LimitChangedAt = timestamppb.New(v.LimitChangedAt)
		}
		for _, a := range v.Agents {
			info.Agents = append(info.Agents, &adminv1.AgentConnections{AgentId: a.AgentID, Quota: a.Quota, Busy: a.Busy, Open: a.Open, Idle: a.Idle})
		}
		resp.Endpoints = append(resp.Endpoints, info)
	}
	return resp, nil
}

func breakerState(b lease.BreakerState) adminv1.BreakerState {
	switch b {
	case lease.BreakerOpen:
		return adminv1.BreakerState_BREAKER_STATE_OPEN
	case lease.BreakerHalfOpen:
		return adminv1.BreakerState_BREAKER_STATE_HALF_OPEN
	}
	return adminv1.BreakerState_BREAKER_STATE_CLOSED
}

// PauseEndpoint holds back tasks that use an endpoint.
func (s *Server) PauseEndpoint(_ context.Context, req *adminv1.PauseEndpointRequest) (*adminv1.PauseEndpointResponse, error) {
	if err := required("endpoint_id", req.EndpointId); err != nil {
		return nil, err
	}
	n, err := s.sched.PauseEndpoint(req.EndpointId)
	if err != nil {
		return nil, toStatus(err, "endpoint_id", req.EndpointId)
	}
	return &adminv1.PauseEndpointResponse{Queued: uint32(n)}, nil
}

// ResumeEndpoint resumes tasks that use an endpoint.
func (s *Server) ResumeEndpoint(_ context.Context, req *adminv1.ResumeEndpointRequest) (*adminv1.ResumeEndpointResponse, error) {
	if err := required("endpoint_id", req.EndpointId); err != nil {
		return nil, err
	}
	if err := s.sched.ResumeEndpoint(req.EndpointId); err != nil {
		return nil, toStatus(err, "endpoint_id", req.EndpointId)
	}
	return &adminv1.ResumeEndpointResponse{}, nil
}

// Watch streams task events until the caller goes away.
func (s *Server) Watch(req *adminv1.WatchRequest, stream adminv1.AdminService_WatchServer) error {
	sub := s.events.Subscribe(req.TaskId, req.SkipProgress)
	defer s.events.Unsubscribe(sub)
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev := <-sub.C:
			if err := stream.Send(&adminv1.WatchResponse{Event: &adminv1.TaskEvent{
				Kind: eventKind(ev.Kind), Time: timestamppb.New(ev.Time), TaskId: ev.TaskID, LeaseId: ev.LeaseID,
				Attempt: ev.Attempt, AgentId: ev.AgentID, BytesDone: ev.BytesDone, BytesTotal: ev.BytesTotal,
				BytesPerSecond: ev.BytesPerSecond, ErrorCode: ev.ErrorCode, ErrorMessage: ev.ErrorMsg, Dropped: sub.Dropped(),
			}}); err != nil {
				return err
			}
		}
	}
}

func eventKind(k lease.EventKind) adminv1.TaskEventKind {
	switch k {
	case lease.EventQueued:
		return adminv1.TaskEventKind_TASK_EVENT_KIND_QUEUED
	case lease.EventLeased:
		return adminv1.TaskEventKind_TASK_EVENT_KIND_LEASED
	case lease.EventProgress:
		return adminv1.TaskEventKind_TASK_EVENT_KIND_PROGRESS
	case lease.EventCommitted:
		return adminv1.TaskEventKind_TASK_EVENT_KIND_COMMITTED
	case lease.EventRetry:
		return adminv1.TaskEventKind_TASK_EVENT_KIND_RETRY
	case lease.EventSucceeded:
		return adminv1.TaskEventKind_TASK_EVENT_KIND_SUCCEEDED
	case lease.EventFailed:
		return adminv1.TaskEventKind_TASK_EVENT_KIND_FAILED
	case lease.EventRevoked:
		return adminv1.TaskEventKind_TASK_EVENT_KIND_REVOKED
	}
	return adminv1.TaskEventKind_TASK_EVENT_KIND_UNSPECIFIED
}
