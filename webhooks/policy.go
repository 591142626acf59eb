package webhooks

import "time"

// Outcome is how one delivery attempt ended, as far as the retry rules care.
type Outcome int

const (
	// Delivered: the endpoint answered 2xx.
	Delivered Outcome = iota
	// Failed: the endpoint answered something else, timed out, refused or
	// reset the connection. It counts towards deactivation.
	Failed
	// Interrupted: we cut the attempt short ourselves (shutdown, or a lease
	// we could not renew). It is not the endpoint's fault: the delivery is
	// due again at once and nothing is counted against the webhook.
	Interrupted
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	}
	return "interrupted"
}

// Policy holds the retry and deactivation rules. Its Next method is the
// only place they are written down: the dispatcher stores what Next
// returns and decides nothing else.
type Policy struct {
	// Schedule is the wait before each retry, measured from the failure
	// before it. With the first attempt, len(Schedule)+1 attempts in all.
	Schedule []time.Duration
	// DeactivateAfter consecutive failed attempts, across all of a
	// webhook's deliveries, switch it off.
	DeactivateAfter int
}

// DeliveryState is the retry state of one delivery.
type DeliveryState struct {
	Status        string // StatusPending, StatusDelivered or StatusFailed
	Attempts      int    // attempts that reached a verdict (interrupted ones do not count)
	NextAttemptAt *time.Time
}

// EndpointState is the part of a webhook the rules change.
type EndpointState struct {
	Active              bool
	ConsecutiveFailures int
	// DeactivatedAt is set by Next at the failure that switched it off.
	DeactivatedAt *time.Time
	// ProbeAfter is set while the webhook is failing: no attempt of any of
	// its deliveries starts before it.
	ProbeAfter *time.Time
}

// Next is the state after an attempt that ended at "at" with outcome o.
//
// A success resets the webhook's count of consecutive failures; a failure
// adds one while the webhook is active, and the one that brings the count
// to DeactivateAfter switches it off. A failed delivery is retried after
// Schedule[attempts so far] and marked failed once the schedule is spent.
// Failures that arrive after the webhook was switched off (attempts that
// were already in flight, or ended after a PATCH turned it off) change the
// delivery but not the count: the count says how many failures in a row
// the endpoint produced while we were sending to it.
//
// A failing webhook is probed, not flooded: after each failure its next
// attempt, of whichever delivery, waits the first step of the schedule
// (ProbeAfter). Its other deliveries are due all along (new events, older
// retries), and without the wait a dead endpoint got one attempt after
// another, as fast as they failed, each one a claim and a record that
// healthy endpoints waited behind. A success ends the wait.
func (p Policy) Next(d DeliveryState, e EndpointState, o Outcome, at time.Time) (DeliveryState, EndpointState) {
	switch o {
	case Delivered:
		d.Attempts++
		d.Status, d.NextAttemptAt = StatusDelivered, nil
		e.ConsecutiveFailures, e.ProbeAfter = 0, nil
	case Failed:
		if d.Attempts < len(p.Schedule) {
			next := at.Add(p.Schedule[d.Attempts])
			d.Status, d.NextAttemptAt = StatusPending, &next
		} else {
			d.Status, d.NextAttemptAt = StatusFailed, nil
		}
		d.Attempts++
		if e.Active {
			e.ConsecutiveFailures++
			if e.ConsecutiveFailures >= p.DeactivateAfter {
				e.Active, e.ProbeAfter = false, nil
				t := at
				e.DeactivatedAt = &t
			} else if len(p.Schedule) > 0 {
				t := at.Add(p.Schedule[0])
				e.ProbeAfter = &t
			}
		}
	case Interrupted:
		next := at
		d.Status, d.NextAttemptAt = StatusPending, &next
	}
	return d, e
}

// EndpointLimit is how many attempts a webhook may have in flight at once,
// across every dispatcher: the configured per-endpoint limit while it is
// healthy, one while it is failing. One at a time while failing is what
// makes deactivation exact: once the count is above zero no second attempt
// can fail alongside the one that reaches the threshold. And the limit of
// a healthy webhook is capped at DeactivateAfter, so that the attempts in
// flight when an endpoint starts failing cannot overshoot it on their own.
//
// A failing webhook waiting for its next probe (ProbeAfter after now) gets
// none.
func (p Policy) EndpointLimit(perEndpoint int, e EndpointState, now time.Time) int {
	if !e.Active || (e.ProbeAfter != nil && e.ProbeAfter.After(now)) {
		return 0
	}
	if e.ConsecutiveFailures > 0 {
		return 1
	}
	return max(1, min(perEndpoint, p.DeactivateAfter))
}
