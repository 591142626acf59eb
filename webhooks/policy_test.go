package webhooks

import (
	"testing"
	"time"
)

func TestPolicyNext(t *testing.T) {
	t.Parallel()
	p := Policy{Schedule: []time.Duration{time.Minute, 5 * time.Minute}, DeactivateAfter: 3}
	at := time.Date(2026, 3, 15, 14, 30, 0, 0, time.UTC)
	in := func(d time.Duration) *time.Time { x := at.Add(d); return &x }
	pending := func(attempts int) DeliveryState {
		return DeliveryState{Status: StatusPending, Attempts: attempts, NextAttemptAt: &at}
	}
	active := func(failures int) EndpointState { return EndpointState{Active: true, ConsecutiveFailures: failures} }
	cases := []struct {
		name      string
		d         DeliveryState
		e         EndpointState
		o         Outcome
		wantD     DeliveryState
		wantE     EndpointState
		switchOff bool
	}{
		{"a first success delivers and resets the count",
			pending(0), EndpointState{Active: true, ConsecutiveFailures: 2, ProbeAfter: in(time.Minute)}, Delivered,
			DeliveryState{Status: StatusDelivered, Attempts: 1}, active(0), false},
		{"the first failure waits the first step of the schedule",
			pending(0), active(0), Failed,
			DeliveryState{Status: StatusPending, Attempts: 1, NextAttemptAt: in(time.Minute)}, active(1), false},
		{"the second failure waits the second step",
			pending(1), active(1), Failed,
			DeliveryState{Status: StatusPending, Attempts: 2, NextAttemptAt: in(5 * time.Minute)}, active(2), false},
		{"a failure once the schedule is spent fails the delivery for good",
			pending(2), active(0), Failed,
			DeliveryState{Status: StatusFailed, Attempts: 3}, active(1), false},
		{"the failure that reaches the threshold switches the webhook off",
			pending(0), active(2), Failed,
			DeliveryState{Status: StatusPending, Attempts: 1, NextAttemptAt: in(time.Minute)},
			EndpointState{Active: false, ConsecutiveFailures: 3, DeactivatedAt: &at}, true},
		{"a failure after the webhook was switched off is not counted",
			pending(0), EndpointState{Active: false, ConsecutiveFailures: 3}, Failed,
			DeliveryState{Status: StatusPending, Attempts: 1, NextAttemptAt: in(time.Minute)},
			EndpointState{Active: false, ConsecutiveFailures: 3}, false},
		{"a success of an inactive webhook's attempt still resets the count",
			pending(1), EndpointState{Active: false, ConsecutiveFailures: 3}, Delivered,
			DeliveryState{Status: StatusDelivered, Attempts: 2}, EndpointState{Active: false}, false},
		{"an interrupted attempt is due again at once and counts for nothing",
			pending(1), active(2), Interrupted,
			DeliveryState{Status: StatusPending, Attempts: 1, NextAttemptAt: &at}, active(2), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, e := p.Next(tc.d, tc.e, tc.o, at)
			// A failure of an active webhook that leaves it on makes it
			// wait the first step of the schedule before its next probe;
			// everything else keeps or clears the wait.
			wantProbe := tc.e.ProbeAfter
			switch {
			case tc.o == Delivered || (tc.o == Failed && tc.switchOff):
				wantProbe = nil
			case tc.o == Failed && tc.e.Active:
				wantProbe = in(time.Minute)
			}
			if !sameTimePtr(e.ProbeAfter, wantProbe) {
				t.Errorf("ProbeAfter = %v, want %v", e.ProbeAfter, wantProbe)
			}
			if d.Status != tc.wantD.Status || d.Attempts != tc.wantD.Attempts || !sameTimePtr(d.NextAttemptAt, tc.wantD.NextAttemptAt) {
				t.Errorf("delivery = %+v (next %v), want %+v (next %v)", d, d.NextAttemptAt, tc.wantD, tc.wantD.NextAttemptAt)
			}
			if e.Active != tc.wantE.Active || e.ConsecutiveFailures != tc.wantE.ConsecutiveFailures {
				t.Errorf("endpoint = %+v, want %+v", e, tc.wantE)
			}
			if (e.DeactivatedAt != nil) != tc.switchOff {
				t.Errorf("DeactivatedAt = %v, want switched off: %v", e.DeactivatedAt, tc.switchOff)
			}
		})
	}
}

// Replaying a long run of outcomes through Next: the webhook goes off at
// exactly the threshold, whatever the number of deliveries involved, and a
// reactivation (count reset, active again) gives it exactly the threshold
// once more.
func TestPolicyDeactivatesAtExactlyTheThreshold(t *testing.T) {
	t.Parallel()
	p := Policy{Schedule: DefaultSchedule, DeactivateAfter: 10}
	at := time.Now()
	e := EndpointState{Active: true}
	failures := 0
	for i := 0; e.Active; i++ {
		if i > 100 {
			t.Fatal("never switched off")
		}
		_, e = p.Next(DeliveryState{Status: StatusPending, Attempts: i % 6}, e, Failed, at)
		failures++
	}
	if failures != 10 || e.ConsecutiveFailures != 10 {
		t.Fatalf("switched off after %d failures (count %d), want 10", failures, e.ConsecutiveFailures)
	}
	e = EndpointState{Active: true} // PATCH {"active":true}
	for n := 1; n <= 10; n++ {
		_, e = p.Next(DeliveryState{Status: StatusPending}, e, Failed, at)
		if e.Active != (n < 10) {
			t.Fatalf("after reactivation and %d failures active = %v", n, e.Active)
		}
	}
}

// The recorder leaves the row of a webhook alone when all its outcomes in
// a batch are successes and its count is zero (so a healthy webhook is
// never locked by the recorder): that is right only while a success leaves
// such a state exactly as it was.
func TestPolicySuccessChangesNothingAtZero(t *testing.T) {
	t.Parallel()
	p := Policy{Schedule: DefaultSchedule, DeactivateAfter: 10}
	at := time.Now()
	for _, e := range []EndpointState{{Active: true}, {Active: false}} {
		for attempts := range len(p.Schedule) + 1 {
			if _, got := p.Next(DeliveryState{Status: StatusPending, Attempts: attempts}, e, Delivered, at); got != e {
				t.Errorf("success on %+v (attempt %d) gave %+v", e, attempts+1, got)
			}
		}
	}
}

func TestPolicyEndpointLimit(t *testing.T) {
	t.Parallel()
	p := Policy{DeactivateAfter: 10}
	now := time.Now()
	later := now.Add(time.Second)
	cases := []struct {
		name        string
		perEndpoint int
		e           EndpointState
		want        int
	}{
		{"healthy: the configured limit", 4, EndpointState{Active: true}, 4},
		{"failing: one probe at a time", 4, EndpointState{Active: true, ConsecutiveFailures: 1}, 1},
		{"inactive: nothing", 4, EndpointState{Active: false}, 0},
		{"failing, before its next probe: nothing", 4, EndpointState{Active: true, ConsecutiveFailures: 1, ProbeAfter: &later}, 0},
		{"failing, once its probe is due: one", 4, EndpointState{Active: true, ConsecutiveFailures: 1, ProbeAfter: &now}, 1},
		{"never more than the threshold, or a burst could overshoot it", 50, EndpointState{Active: true}, 10},
		{"at least one", 0, EndpointState{Active: true}, 1},
	}
	for _, tc := range cases {
		if got := p.EndpointLimit(tc.perEndpoint, tc.e, now); got != tc.want {
			t.Errorf("%s: EndpointLimit = %d, want %d", tc.name, got, tc.want)
		}
	}
}
