package webhooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
)

// DefaultSchedule is the wait before each retry, measured from the failure
// before it: 1st retry after 1 minute ... 5th after 12 hours. With the first
// attempt that is 6 attempts in all.
var DefaultSchedule = []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 12 * time.Hour}

// Defaults of DispatcherConfig.
const (
	DefaultConcurrency = 64
	DefaultPerEndpoint = 8
	DefaultLease       = 10 * time.Second
)

// DispatcherConfig tunes a Dispatcher; zero values mean the defaults.
type DispatcherConfig struct {
	// Schedule of retries (SALESOS_WEBHOOK_RETRY_SCHEDULE). Default
	// DefaultSchedule.
	Schedule []time.Duration
	// DeactivateAfter consecutive failed attempts of one webhook, across
	// all its deliveries, switch it off (SALESOS_WEBHOOK_DEACTIVATE_AFTER).
	// Default 10.
	DeactivateAfter int
	// Concurrency is the most attempts in flight in this process
	// (SALESOS_WEBHOOK_CONCURRENCY). Default 64: with fewer, the claim and
	// record transactions rather than the endpoints capped the delivery
	// rate on 2 cores.
	Concurrency int
	// PerEndpoint is the most attempts one webhook may have in flight at
	// once, across every dispatcher (SALESOS_WEBHOOK_ENDPOINT_CONCURRENCY).
	// A slow or dead endpoint can hold no more than this many of the
	// Concurrency slots, so it cannot delay anyone else's deliveries.
	// Never more than DeactivateAfter (see Policy.EndpointLimit). Default 8.
	PerEndpoint int
	// Lease is how long a claim reserves a delivery for this process
	// (SALESOS_WEBHOOK_LEASE). The dispatcher renews the leases of its
	// attempts every Lease/3 while they run, and cuts an attempt short
	// before a lease it could not renew runs out, so a lease never expires
	// under a live attempt; and a crashed process's deliveries are taken
	// over by another one within Lease. Default 10s.
	Lease time.Duration
	// PollInterval is the longest idle wait before looking for due
	// deliveries again. Default 200ms.
	PollInterval time.Duration
	// Wake, when set, returns a channel closed when new deliveries may have
	// been created in this process (the fan-out's progress), so they go out
	// without waiting for the poll.
	Wake   func() <-chan struct{}
	Sender *Sender
	Logger *slog.Logger
	// Owner names this process in leases. Default a random id.
	Owner string
	// OnError, when set, is told of every failed claim, record or lease
	// renewal (stage "claim", "record" or "renew").
	OnError func(stage string)
	// OnOutcome, when set, is told the outcome of every recorded attempt:
	// "delivered", "retry" (failed, will be retried), "failed" (for good)
	// or "interrupted" (cut short by us; due again at once).
	OnOutcome func(outcome string)
}

func (c *DispatcherConfig) setDefaults() {
	if len(c.Schedule) == 0 {
		c.Schedule = DefaultSchedule
	}
	if c.DeactivateAfter <= 0 {
		c.DeactivateAfter = 10
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.PerEndpoint <= 0 {
		c.PerEndpoint = DefaultPerEndpoint
	}
	if c.Sender == nil {
		c.Sender = NewSender(SenderConfig{})
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Owner == "" {
		c.Owner = newID("dispatcher")
	}
}

// Dispatcher sends due deliveries and records the outcome.
//
// It is a continuous pipeline: whenever a slot of Concurrency is free it
// claims more due deliveries, round-robin over the webhooks that have some
// (oldest waiting first), each webhook limited to its share
// (Policy.EndpointLimit) of attempts in flight across every dispatcher. An
// attempt that hangs holds one slot of its own webhook, not the pipeline.
//
// Several dispatchers (in several instances) work side by side: a delivery
// is claimed with a short lease in a transaction that excludes the other
// claimers (FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite the claim is a
// write transaction, and the file has one writer at a time), so it is sent
// by one of them at a time; the lease is renewed while the attempt runs.
//
// On SQLite db must be the file's writer handle (one connection); the
// dispatcher only ever uses it for one short transaction at a time and
// holds no transaction while sending.
type Dispatcher struct {
	db     *sqlx.DB
	drv    driver.Webhooks
	cfg    DispatcherConfig
	policy Policy

	results chan result
	// recorded is signalled after each batch of outcomes commits: their
	// leases are gone, so their webhooks have room for the next attempts.
	recorded chan struct{}

	mu       sync.Mutex
	inflight map[string]*flight // by delivery id
	// flying counts running attempts by webhook; unrecorded holds, by
	// webhook, the outcomes of finished attempts the recorder has not
	// committed yet. claim reads both (see there).
	flying     map[string]int
	unrecorded map[string][]unrecordedOutcome
	// claimedState is, for each webhook in flying, its state when its
	// latest attempt was claimed (see full).
	claimedState map[string]EndpointState
	// interrupted is closed by Interrupt: attempts are cut short and the
	// recorder stops retrying a database that is away.
	interrupted   chan struct{}
	interruptOnce sync.Once

	// failing holds, by stage, when its current run of failures began and
	// the last error (see Health).
	failing map[string]failure
}

// NewDispatcher prepares a dispatcher on db, whose statements drv runs;
// Run starts it.
func NewDispatcher(db *sqlx.DB, drv driver.Webhooks, cfg DispatcherConfig) *Dispatcher {
	cfg.setDefaults()
	return &Dispatcher{
		db: db, drv: drv, cfg: cfg,
		policy:       Policy{Schedule: cfg.Schedule, DeactivateAfter: cfg.DeactivateAfter},
		inflight:     map[string]*flight{},
		flying:       map[string]int{},
		claimedState: map[string]EndpointState{},
		failing:      map[string]failure{},
		unrecorded:   map[string][]unrecordedOutcome{},
		recorded:     make(chan struct{}, 1),
		interrupted:  make(chan struct{}),
	}
}

// claimed is a delivery this process holds the lease of.
type claimed struct {
	ID        string `db:"id"`
	WebhookID string `db:"webhook_id"`
	EventID   string `db:"event_id"`
	Payload   string `db:"payload"`
	Attempts  int    `db:"attempts"`
	URL       string `db:"url"`
	Secret    string `db:"secret"`
	// leasedAt is a local time taken before the claim's transaction began:
	// the lease the database granted runs at least until leasedAt + Lease.
	leasedAt time.Time
	// state is the webhook's state as the claim read it.
	state EndpointState
}

type result struct {
	d       claimed
	at      time.Time
	attempt Attempt
	outcome Outcome
}

type unrecordedOutcome struct {
	deliveryID string
	outcome    Outcome
	at         time.Time
}

// flight is an attempt in progress.
type flight struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	// cutoff cuts the attempt short shortly before its lease would run out
	// unrenewed; every renewal moves it.
	cutoff *time.Timer
}

var (
	errInterrupted = errors.New("interrupted: the dispatcher is shutting down")
	errLeaseLost   = errors.New("interrupted: the delivery's lease could not be renewed")
)

// Run sends deliveries until ctx ends. Then it claims nothing more, and
// waits for the attempts in flight to finish and be recorded; Interrupt
// cuts them short.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.results = make(chan result, d.cfg.Concurrency*2)
	var wg sync.WaitGroup
	recorderDone := make(chan struct{})
	go func() {
		defer close(recorderDone)
		d.record()
	}()
	renewCtx, stopRenewing := context.WithCancel(context.Background())
	renewerDone := make(chan struct{})
	go func() {
		defer close(renewerDone)
		d.renewLeases(renewCtx)
	}()

	slots := make(chan struct{}, d.cfg.Concurrency)
	freed := make(chan struct{}, 1)
	for ctx.Err() == nil {
		var wake <-chan struct{}
		if d.cfg.Wake != nil {
			wake = d.cfg.Wake()
		}
		free := d.cfg.Concurrency - len(slots)
		var batch []claimed
		if free > 0 {
			var err error
			batch, err = d.claim(ctx, free)
			if err != nil && ctx.Err() == nil {
				d.failed("claim", err)
				d.cfg.Logger.Warn("webhooks: claiming deliveries failed", "error", err)
			} else if err == nil {
				d.succeeded("claim")
			}
		}
		for _, c := range batch {
			slots <- struct{}{}
			wg.Add(1)
			f := d.track(c)
			go func() {
				defer wg.Done()
				defer func() {
					<-slots
					select {
					case freed <- struct{}{}:
					default:
					}
				}()
				d.send(c, f)
			}()
		}
		if len(batch) == free && free > 0 {
			continue // there may be more due right now
		}
		t := time.NewTimer(d.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-wake:
		case <-freed:
		case <-d.recorded:
		case <-t.C:
		}
		t.Stop()
	}
	wg.Wait()
	stopRenewing()
	<-renewerDone
	close(d.results)
	<-recorderDone
	return nil
}

// Interrupt cuts every attempt in flight short (each is recorded as
// interrupted, due again at once, not counted against its webhook) and
// makes the recorder give up after one more try if the database is away:
// the leases then run out and another dispatcher sends those deliveries.
// The server calls it when its shutdown deadline is near.
func (d *Dispatcher) Interrupt() {
	d.interruptOnce.Do(func() { close(d.interrupted) })
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.inflight {
		f.cancel(errInterrupted)
	}
}

// track registers a claimed delivery's attempt before it starts: from
// here on Interrupt and the lease cutoff can cut it short.
func (d *Dispatcher) track(c claimed) *flight {
	ctx, cancel := context.WithCancelCause(context.Background())
	f := &flight{ctx: ctx, cancel: cancel}
	d.mu.Lock()
	defer d.mu.Unlock()
	f.cutoff = time.AfterFunc(time.Until(c.leasedAt.Add(d.cfg.Lease-d.leaseMargin())), func() { cancel(errLeaseLost) })
	select {
	case <-d.interrupted:
		cancel(errInterrupted)
	default:
	}
	d.inflight[c.ID] = f
	d.flying[c.WebhookID]++
	d.claimedState[c.WebhookID] = c.state
	return f
}

// send makes one attempt. It does not stop when Run's context ends: an
// attempt that started is finished (bounded by the sender's timeout) unless
// Interrupt or an unrenewable lease cuts it short, and it is recorded
// either way, so a graceful shutdown never leaves a sent-but-unrecorded
// delivery behind.
func (d *Dispatcher) send(c claimed, f *flight) {
	ctx := f.ctx
	defer f.cancel(nil)
	now := time.Now()
	h, err := Headers(c.Secret, c.EventID, now, []byte(c.Payload))
	var a Attempt
	if err == nil && ctx.Err() == nil {
		a = d.cfg.Sender.Send(ctx, c.URL, h, []byte(c.Payload))
	} else if err != nil {
		a = Attempt{Err: fmt.Errorf("signing: %w", err)}
	}
	o := Failed
	switch {
	case a.Success():
		o = Delivered
	case context.Cause(ctx) != nil:
		// Cut short by us, not by the endpoint.
		o = Interrupted
		a = Attempt{Err: context.Cause(ctx), Duration: a.Duration}
	}
	d.mu.Lock()
	f.cutoff.Stop()
	delete(d.inflight, c.ID)
	d.flying[c.WebhookID]--
	if d.flying[c.WebhookID] == 0 {
		delete(d.flying, c.WebhookID)
		delete(d.claimedState, c.WebhookID)
	}
	d.unrecorded[c.WebhookID] = append(d.unrecorded[c.WebhookID], unrecordedOutcome{c.ID, o, time.Now()})
	d.mu.Unlock()
	d.results <- result{d: c, at: now, attempt: a, outcome: o}
}

// forget drops the outcomes of a batch from unrecorded once the recorder
// is done with them (stored, or given up at shutdown).
func (d *Dispatcher) forget(batch []result) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range batch {
		list := d.unrecorded[r.d.WebhookID]
		for i, u := range list {
			if u.deliveryID == r.d.ID {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(d.unrecorded, r.d.WebhookID)
		} else {
			d.unrecorded[r.d.WebhookID] = list
		}
	}
}
