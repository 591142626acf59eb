package projections

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// States of a projection in this process, as Health reports them.
const (
	// StateRunning: following the event store and applying batches.
	StateRunning = "running"
	// StateRetrying: the last attempt failed (see LastError); the
	// supervisor or the batch retry tries again after a backoff.
	StateRetrying = "retrying"
	// StateParked: running, with events set aside (see parking.go).
	StateParked = "parked"
	// StateStandby: another instance holds the projection's leader lock.
	StateStandby = "standby"
	// StateStopped: not run by this process (Run not started or ended).
	StateStopped = "stopped"
)

// States lists every state, for gauges that show one of them at a time.
var States = []string{StateRunning, StateRetrying, StateParked, StateStandby, StateStopped}

// projectionState is what the runner knows of one projection; guarded by
// Runner.mu.
type projectionState struct {
	state      string
	lastErr    string
	lastErrAt  time.Time
	errors     uint64
	progressAt time.Time // last batch committed here
	// The checkpoint as Health last saw it, and since when: a projection
	// run by another instance is judged by its stored progress.
	seenPos uint64
	seenAt  time.Time
}

func (s *projectionState) setState(v string) { s.state = v }

func (r *Runner) setState(name, v string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.state[name]; st != nil {
		st.setState(v)
	}
}

// failed records an error of projection name: counted, kept as its last
// error, and the projection is retrying until it makes progress again.
func (r *Runner) failed(name string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.state[name]
	if st == nil {
		return
	}
	st.state = StateRetrying
	st.errors++
	st.lastErr = truncateError(err.Error())
	st.lastErrAt = time.Now()
}

// ProjectionHealth is one projection's condition.
type ProjectionHealth struct {
	Name     string `json:"name"`
	State    string `json:"state"` // one of States
	Position uint64 `json:"position"`
	Lag      uint64 `json:"lag"`    // positions behind the event store's head
	Parked   int64  `json:"parked"` // events parked
	// Errors counts failures since the process started.
	Errors      uint64    `json:"errors"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Stalled: behind the head with no progress for Config.StallAfter.
	Stalled bool `json:"stalled"`
}

// Health reports every projection: its local state, stored checkpoint, lag,
// parked events and errors. It reads the database (checkpoints, head,
// parked counts); call it from readiness probes and metric scrapes.
func (r *Runner) Health(ctx context.Context) ([]ProjectionHealth, error) {
	cps, head, err := r.Positions(ctx)
	if err != nil {
		return nil, err
	}
	parked, err := ParkedCounts(ctx, r.read, r.d)
	if err != nil {
		return nil, fmt.Errorf("parked events: %w", err)
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ProjectionHealth, 0, len(r.projections))
	for _, p := range r.projections {
		name := p.Name()
		st := r.state[name]
		cp := cps[name]
		h := ProjectionHealth{
			Name: name, State: st.state, Position: cp, Lag: head - min(cp, head), Parked: parked[name],
			Errors: st.errors, LastError: st.lastErr, LastErrorAt: st.lastErrAt,
		}
		if h.State == StateRunning && h.Parked > 0 {
			h.State = StateParked
		}
		if cp != st.seenPos || h.Lag == 0 || st.seenAt.IsZero() {
			st.seenPos, st.seenAt = cp, now
		}
		since := st.seenAt
		if st.progressAt.After(since) {
			since = st.progressAt
		}
		h.Stalled = h.Lag > 0 && now.Sub(since) > r.cfg.StallAfter
		out = append(out, h)
	}
	return out, nil
}

// Summary describes the projections that need attention, for /readyz:
// stalled ones (the read side is stale for everyone) and those that are
// retrying or have parked events. Both strings are empty when all is well.
func Summary(hs []ProjectionHealth) (stalled, degraded string) {
	var bad, warn []string
	for _, h := range hs {
		switch {
		case h.Stalled:
			s := fmt.Sprintf("%s stalled %d behind (%s)", h.Name, h.Lag, h.State)
			if h.LastError != "" {
				s += ": " + h.LastError
			}
			bad = append(bad, s)
		case h.State == StateRetrying:
			warn = append(warn, fmt.Sprintf("%s retrying: %s", h.Name, h.LastError))
		}
		if h.Parked > 0 {
			warn = append(warn, fmt.Sprintf("%s has %d parked event(s)", h.Name, h.Parked))
		}
	}
	return strings.Join(bad, "; "), strings.Join(warn, "; ")
}
