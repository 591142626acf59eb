// Package projections builds the query side of SalesOS from the event store.
//
// Each projection is a Watermill handler on a Router of its own, under its
// own supervisor (Runner.supervise), so one that fails is started again by
// itself while the others run. Its subscriber reads the event store from
// the projection's checkpoint and hands the handler whole batches; the
// handler applies a batch (through the database's driver.Driver: set-based
// SQL on PostgreSQL, prepared per-row statements on SQLite) and moves the
// checkpoint in the same transaction. An event that cannot be applied is
// parked rather than failing its batch forever (see parking.go). So a crash
// at any point either keeps the whole batch or none of it, and replaying a
// batch that was already applied changes nothing (events at or below the
// checkpoint are skipped). Among several API instances one runs each
// projection at a time (the driver's leader lock: an advisory lock on
// PostgreSQL, none on SQLite); the others stand by.
//
// The same code runs on PostgreSQL and on the embedded SQLite file: every
// statement goes through a driver.Driver, and this package never asks which
// database it runs on. The files split by job: hosting (runner.go),
// checkpointed apply (apply.go), catch-up (catchup.go), waiting (wait.go),
// parking (parking.go, retry.go, transient.go). On SQLite every write goes
// through one connection, so code holding a transaction there must use that
// transaction and nothing else: asking the *sqlx.DB for another connection
// would wait forever.
//
// Warning: a projection's Name is its checkpoint key. Renaming a projection
// makes it start again from position 0.
package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/eventstore"
)

// Projection turns events into query tables.
type Projection interface {
	// Name is the checkpoint key (see the package warning).
	Name() string
	// Apply applies events, in position order, inside tx. Every event is
	// offered, including types the projection does not care about.
	Apply(ctx context.Context, tx *sqlx.Tx, events []eventstore.RecordedEvent) error
	// Reset empties the projection's tables, for a rebuild.
	Reset(ctx context.Context, tx *sqlx.Tx) error
}

// Preparer is implemented by projections that can do the CPU part of a
// batch (decoding events) outside the transaction. CatchUp prepares the
// next batch while the database applies the current one, so on a catch-up
// the decoding and the SQL overlap instead of taking turns.
type Preparer interface {
	Projection
	// Prepare decodes a batch; it must not touch the database.
	Prepare(events []eventstore.RecordedEvent) (any, error)
	// ApplyPrepared applies a prepared batch inside tx, skipping events at
	// or below position after (already applied).
	ApplyPrepared(ctx context.Context, tx *sqlx.Tx, prepared any, after uint64) error
}

// Config of a Runner. Zero values mean the documented defaults.
type Config struct {
	// BatchSize is the most events applied in one transaction. Default 1000.
	BatchSize int
	// LeaderRetry is how often a standby instance tries to take over a
	// projection. Default 2s.
	LeaderRetry time.Duration
	// MaxRetries of a failing batch before it is handed back and offered
	// again after a backoff. Default 5.
	MaxRetries int
	// MaxBackoff caps the pause before a failed projection (or a batch
	// that keeps failing) is tried again. Default 5s.
	MaxBackoff time.Duration
	// StallAfter is how long a projection may stay behind the head without
	// applying anything before Health calls it stalled. Default 30s.
	StallAfter time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Read, when set, serves the runner's checkpoint reads (WaitFor,
	// Positions, Lag, the subscriber's rebuild checks) instead of the write
	// handle. On SQLite give it the read pool: the write handle is a single
	// connection, and read-your-writes polls would queue behind batches and
	// appends on it. Default: the handle given to NewRunner.
	Read *sqlx.DB
}

func (c *Config) setDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.LeaderRetry <= 0 {
		c.LeaderRetry = 2 * time.Second
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = 5
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.StallAfter <= 0 {
		c.StallAfter = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Runner hosts projections, each on a Watermill router of its own under
// its own supervisor: a projection whose subscription or batches fail is
// started again with backoff by itself, whatever the others do.
type Runner struct {
	db          *sqlx.DB
	d           driver.Driver
	read        *sqlx.DB // checkpoint reads; db unless Config.Read is set
	store       eventstore.Store
	projections []Projection
	cfg         Config
	progress    eventstore.Signal

	mu    sync.Mutex
	state map[string]*projectionState
	// applyHook, when set by tests, runs after each committed batch.
	applyHook func(name string, last uint64)
}

// NewRunner prepares a runner on db (the write handle) and its driver; Run
// starts it.
func NewRunner(db *sqlx.DB, d driver.Driver, store eventstore.Store, cfg Config, ps ...Projection) *Runner {
	cfg.setDefaults()
	read := cfg.Read
	if read == nil {
		read = db
	}
	r := &Runner{db: db, d: d, read: read, store: store, projections: ps, cfg: cfg, state: map[string]*projectionState{}}
	for _, p := range ps {
		r.state[p.Name()] = &projectionState{state: StateStopped}
	}
	return r
}

// Run blocks until ctx ends, supervising every projection on its own.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, p := range r.projections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.supervise(ctx, p)
		}()
	}
	wg.Wait()
	return nil
}

// supervise runs p until ctx ends. Whatever stops it (a lost connection, a
// checkpoint that cannot be read, a lost leader lock, a panic) it is
// started again after a pause that grows to Config.MaxBackoff and starts
// small again once the projection has run for a while.
func (r *Runner) supervise(ctx context.Context, p Projection) {
	b := &backoff{min: 100 * time.Millisecond, max: r.cfg.MaxBackoff}
	b.reset()
	for ctx.Err() == nil {
		started := time.Now()
		var reported bool
		err := safeApply(func() (err error) {
			reported, err = r.runOne(ctx, p)
			return err
		})
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			err = errors.New("stopped")
		}
		if !reported {
			r.failed(p.Name(), err)
		}
		if time.Since(started) > time.Minute {
			b.reset()
		}
		r.cfg.Logger.Error("projection stopped; restarting", "projection", p.Name(), "error", err, "after", b.d)
		if !b.wait(ctx) {
			break
		}
	}
	r.setState(p.Name(), StateStopped)
}

// runOne runs p on a router of its own until the router stops: ctx ended,
// or the subscription ended with an error (returned, with reported set when
// the subscriber has already recorded it).
func (r *Runner) runOne(ctx context.Context, p Projection) (reported bool, err error) {
	wlog := watermill.NewSlogLogger(r.cfg.Logger.With("component", "projections", "projection", p.Name()))
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wlog)
	if err != nil {
		return false, err
	}
	// Retry wraps Recoverer so that a panic becomes an error that is retried
	// like any other, instead of escaping the retry loop.
	router.AddMiddleware(
		middleware.Retry{
			MaxRetries:      r.cfg.MaxRetries,
			InitialInterval: 50 * time.Millisecond,
			MaxInterval:     min(2*time.Second, r.cfg.MaxBackoff),
			Multiplier:      2,
			Logger:          wlog,
		}.Middleware,
		middleware.Recoverer,
	)
	name := p.Name()
	sub := &storeSubscriber{
		store: r.store, db: r.db, d: r.d, read: r.read, batchSize: r.cfg.BatchSize, logger: r.cfg.Logger,
		lockRetry: r.cfg.LeaderRetry, maxBackoff: r.cfg.MaxBackoff,
		onStandby: func() { r.setState(name, StateStandby) },
		onLeading: func() { r.setState(name, StateRunning) },
		onError:   func(err error) { r.failed(name, err) },
	}
	router.AddConsumerHandler(name, name, sub, r.handler(p))
	err = router.Run(ctx)
	_ = sub.Close()
	if serr := sub.lastError(); serr != nil {
		return true, serr
	}
	return false, err
}

func (r *Runner) handler(p Projection) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		batch, ok := batchOf(msg)
		if !ok {
			return fmt.Errorf("message %s carries no batch of events", msg.UUID)
		}
		last, err := applyBatch(msg.Context(), r.db, r.d, p, batch.Generation, batch.Events, nil)
		if errors.Is(err, errRebuilt) {
			return nil // the subscriber notices and starts again from 0
		}
		if err != nil {
			r.failed(p.Name(), err)
			return err
		}
		r.advanced(p.Name(), last)
		return nil
	}
}

func (r *Runner) advanced(name string, pos uint64) {
	r.mu.Lock()
	hook := r.applyHook
	if st := r.state[name]; st != nil {
		st.setState(StateRunning)
		st.progressAt = time.Now()
	}
	r.mu.Unlock()
	r.progress.Notify()
	if hook != nil {
		hook(name, pos)
	}
}

// Progress returns a channel closed the next time any projection of this
// runner commits a batch (other workers use it as a wake-up).
func (r *Runner) Progress() <-chan struct{} { return r.progress.Wait() }

// Projections are the projections this runner hosts, in order.
func (r *Runner) Projections() []Projection { return append([]Projection(nil), r.projections...) }
