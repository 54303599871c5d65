package lease

import "errors"

// ErrUnknownAgent is returned for an agent id with no session.
var ErrUnknownAgent = errors.New("unknown agent")

// Admin is the operator's handle on a scheduler: the views the admin API
// shows (inspect.go, endpoints.go) and the actions it takes: pause or
// resume an endpoint, cancel a task, drain an agent. It keeps no state of
// its own; every call takes the scheduler's lock, and the actions go
// through the part that owns what they change.
type Admin struct {
	s *Scheduler
}

// Admin returns the operator's handle on the scheduler.
func (s *Scheduler) Admin() *Admin { return &Admin{s: s} }

// Cancel cancels a task by id. A queued task fails at once with CANCELLED; a
// leased one is cancelled on its agent and fails when the agent answers.
func (a *Admin) Cancel(taskID, reason string) (prev TaskState, err error) {
	a.s.update(func() { prev, err = a.s.ledger.cancel(taskID, reason) })
	return prev, err
}

// DrainAgent stops leasing to every session of an agent.
func (a *Admin) DrainAgent(agentID string) (inFlight int, err error) {
	s := a.s
	s.update(func() {
		found := false
		for _, sess := range s.sessions {
			if sess.agentID == agentID {
				found = true
				if !sess.draining {
					sess.draining = true
					sess.out.push(drainMsg(s.cfg.TTL))
				}
				inFlight += len(sess.leases)
			}
		}
		if !found {
			err = ErrUnknownAgent
		}
	})
	return inFlight, err
}
