// Package projections builds the query side of SalesOS from the event store.
//
// Each projection is a Watermill handler on a Router of its own, under its
// own supervisor (Runner.supervise), so one that fails is started again by
// itself while the others run. Its subscriber reads
// the event store from the projection's checkpoint and hands the handler
// whole batches; the handler applies a batch (set-based SQL on PostgreSQL,
// prepared per-row statements on SQLite) and moves the checkpoint in the
// same transaction. An event that cannot be applied is parked rather than
// failing its batch forever (see parking.go). So a crash at any point either
// keeps the whole batch or none of it, and replaying a batch that was
// already applied changes nothing (events at or below the checkpoint are
// skipped). Among several API instances one runs each projection at a time
// (an advisory lock on PostgreSQL; see acquireLeader for SQLite); the others
// stand by.
//
// The same code runs on PostgreSQL and on the embedded SQLite file; where
// the SQL differs, the statements for each dialect sit side by side (see
// internal/dialect). On SQLite every write goes through one connection, so
// code holding a transaction there must use that transaction and nothing
// else: asking the *sqlx.DB for another connection would wait forever.
//
// Warning: a projection's Name is its checkpoint key. Renaming a projection
// makes it start again from position 0.
package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/internal/dialect"
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

// NewRunner prepares a runner; Run starts it.
func NewRunner(db *sqlx.DB, store eventstore.Store, cfg Config, ps ...Projection) *Runner {
	cfg.setDefaults()
	read := cfg.Read
	if read == nil {
		read = db
	}
	r := &Runner{db: db, read: read, store: store, projections: ps, cfg: cfg, state: map[string]*projectionState{}}
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
		store: r.store, db: r.db, read: r.read, batchSize: r.cfg.BatchSize, logger: r.cfg.Logger,
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
		var batch batchPayload
		if err := json.Unmarshal(msg.Payload, &batch); err != nil {
			return fmt.Errorf("decode batch: %w", err)
		}
		last, err := applyBatch(msg.Context(), r.db, p, batch.Generation, batch.Events, nil)
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

// errRebuilt: the projection was reset by a rebuild after the batch was read.
var errRebuilt = errors.New("projection was rebuilt")

// checkpoint is a projection's stored progress.
type checkpoint struct {
	Position   int64 `db:"position"`
	Generation int64 `db:"generation"`
}

// applyBatch applies the events above the stored checkpoint and moves the
// checkpoint, in one transaction. The checkpoint row is locked first, so
// even two runners that both believe they lead cannot apply a batch twice,
// and a batch read before a rebuild (another generation) is dropped.
//
// On SQLite there are no row locks and none are needed: the transaction
// holds the database's only write lock from its first statement (BEGIN
// IMMEDIATE on OpenDB's writer; and the INSERT below would take it anyway),
// so the checkpoint read here cannot change until the commit, even when
// another process writes the same file.
//
// A batch is first applied whole, without a savepoint (on SQLite a
// savepoint makes every page the batch dirties be copied aside). If that
// fails for a reason that is not transient, it is rolled back and applied
// again in a fresh transaction that isolates and parks the events at fault
// (see parking.go).
func applyBatch(ctx context.Context, db *sqlx.DB, p Projection, generation int64, events []eventstore.RecordedEvent, prepared any) (uint64, error) {
	last, err := applyBatchTx(ctx, db, p, generation, events, prepared, false)
	var ni *needsIsolation
	if errors.As(err, &ni) {
		last, err = applyBatchTx(ctx, db, p, generation, events, nil, true)
	}
	return last, err
}

func applyBatchTx(ctx context.Context, db *sqlx.DB, p Projection, generation int64, events []eventstore.RecordedEvent, prepared any, isolate bool) (uint64, error) {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	lite := dialect.IsSQLite(tx)
	if !lite {
		if err := customPlans(ctx, tx); err != nil {
			return 0, err
		}
	}
	cp, err := lockCheckpoint(ctx, tx, p.Name(), lite)
	if err != nil {
		return 0, err
	}
	if cp.Generation != generation {
		return 0, errRebuilt
	}
	fresh := events
	for len(fresh) > 0 && fresh[0].Position <= uint64(cp.Position) {
		fresh = fresh[1:]
	}
	if len(fresh) == 0 {
		return uint64(cp.Position), nil // a redelivered batch: already applied
	}
	// Events that cannot be applied are parked (see parking.go); only a
	// transient error fails the batch.
	if err := applyOrPark(ctx, tx, p, fresh, prepared, uint64(cp.Position), isolate); err != nil {
		return 0, fmt.Errorf("projection %s: %w", p.Name(), err)
	}
	last := fresh[len(fresh)-1].Position
	if _, err := tx.ExecContext(ctx, `UPDATE projection_checkpoints SET position = $2, updated_at = $3 WHERE name = $1`, p.Name(), int64(last), time.Now().UTC()); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return last, nil
}

// lockCheckpoint creates the projection's checkpoint row if needed and reads
// it, locked until tx ends: FOR UPDATE on PostgreSQL; on SQLite the write
// transaction is already exclusive.
func lockCheckpoint(ctx context.Context, tx *sqlx.Tx, name string, lite bool) (checkpoint, error) {
	var cp checkpoint
	if _, err := tx.ExecContext(ctx, `INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, name); err != nil {
		return cp, err
	}
	q := `SELECT position, generation FROM projection_checkpoints WHERE name = $1 FOR UPDATE`
	if lite {
		q = `SELECT position, generation FROM projection_checkpoints WHERE name = $1`
	}
	err := tx.GetContext(ctx, &cp, q, name)
	return cp, err
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

// Position is the checkpoint of a projection as stored.
func Position(ctx context.Context, db sqlx.QueryerContext, name string) (uint64, error) {
	cp, err := loadCheckpoint(ctx, db, name)
	return uint64(cp.Position), err
}

func loadCheckpoint(ctx context.Context, db sqlx.QueryerContext, name string) (checkpoint, error) {
	var cp checkpoint
	err := sqlx.GetContext(ctx, db, &cp, `SELECT position, generation FROM projection_checkpoints WHERE name = $1`, name)
	if errors.Is(err, sql.ErrNoRows) {
		return checkpoint{}, nil
	}
	return cp, err
}

// ErrNotCaughtUp is returned by WaitFor when the wait runs out.
var ErrNotCaughtUp = errors.New("projection has not caught up yet")

// WaitFor blocks until the projection has applied every event up to pos
// (read-your-writes), or ctx ends. It works whichever instance runs the
// projection: it watches the stored checkpoint, woken early by local
// progress.
func (r *Runner) WaitFor(ctx context.Context, name string, pos uint64) error {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		wake := r.progress.Wait()
		cp, err := Position(ctx, r.read, name)
		if err != nil {
			if ctx.Err() != nil {
				return ErrNotCaughtUp
			}
			return err
		}
		if cp >= pos {
			return nil
		}
		select {
		case <-ctx.Done():
			return ErrNotCaughtUp
		case <-wake:
		case <-tick.C:
		}
	}
}

// Positions reports each projection's stored checkpoint and the event
// store's head (for metrics).
func (r *Runner) Positions(ctx context.Context) (map[string]uint64, uint64, error) {
	head, err := r.store.Head(ctx)
	if err != nil {
		return nil, 0, err
	}
	out := make(map[string]uint64, len(r.projections))
	for _, p := range r.projections {
		cp, err := Position(ctx, r.read, p.Name())
		if err != nil {
			return nil, 0, err
		}
		out[p.Name()] = cp
	}
	return out, head, nil
}

// Lag reports, per projection, how many positions it is behind the head of
// the event store.
func (r *Runner) Lag(ctx context.Context) (map[string]uint64, error) {
	cps, head, err := r.Positions(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(cps))
	for name, cp := range cps {
		out[name] = head - min(cp, head)
	}
	return out, nil
}

// Rebuild empties a projection's tables, resets its checkpoint to 0 and
// starts a new generation, in one transaction. An instance running the
// projection notices the new generation after its current batch and replays
// every event from the start; CatchUp does the same in-process.
func Rebuild(ctx context.Context, db *sqlx.DB, p Projection) error {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Lock the checkpoint row first: a batch being applied right now
	// finishes before the reset, never after it.
	lite := dialect.IsSQLite(tx)
	if _, err := lockCheckpoint(ctx, tx, p.Name(), lite); err != nil {
		return err
	}
	if err := p.Reset(ctx, tx); err != nil {
		return err
	}
	// The replay meets the parked events again and parks them afresh.
	if _, err := tx.ExecContext(ctx, `DELETE FROM projection_parked_events WHERE projection = $1`, p.Name()); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE projection_checkpoints SET position = 0, generation = generation + 1, updated_at = $2 WHERE name = $1`, p.Name(), time.Now().UTC()); err != nil {
		return err
	}
	return tx.Commit()
}

// CatchUp applies stored events to the projection until it reaches the head
// that was current when it started, without a router (the rebuild command
// and benchmarks use it). It is safe beside a running instance: both go
// through the same locked checkpoint.
func CatchUp(ctx context.Context, db *sqlx.DB, store eventstore.Store, p Projection, batchSize int) (uint64, error) {
	if batchSize <= 0 {
		batchSize = 1000
	}
	head, err := store.Head(ctx)
	if err != nil {
		return 0, err
	}
	cp, err := loadCheckpoint(ctx, db, p.Name())
	if err != nil {
		return 0, err
	}
	pos := uint64(cp.Position)

	// A reader reads (and, for a Preparer, decodes) ahead while the
	// database applies: two batches in flight at most.
	type batch struct {
		evs      []eventstore.RecordedEvent
		prepared any
		err      error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan batch, 1)
	go func() {
		defer close(batches)
		next := pos
		for next < head {
			evs, err := store.ReadAll(ctx, next, batchSize)
			b := batch{evs: evs, err: err}
			if err == nil && len(evs) > 0 {
				if pp, ok := p.(Preparer); ok {
					// A batch that does not decode goes through Apply, which
					// finds and parks the events at fault.
					if prepared, err := pp.Prepare(evs); err == nil {
						b.prepared = prepared
					}
				}
				next = evs[len(evs)-1].Position
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
			if b.err != nil || len(evs) == 0 {
				return
			}
		}
	}()
	for b := range batches {
		if b.err != nil {
			return pos, b.err
		}
		if len(b.evs) == 0 {
			break
		}
		applied, err := applyBatch(ctx, db, p, cp.Generation, b.evs, b.prepared)
		if err != nil {
			return pos, err
		}
		pos = max(applied, b.evs[len(b.evs)-1].Position)
	}
	return pos, nil
}

// customPlans (PostgreSQL only) makes the transaction plan each statement
// with its actual parameters. pgx caches prepared statements per
// connection, and PostgreSQL may settle on a generic plan made while a table
// was empty (after a TRUNCATE, or before the first ANALYZE): for
// "id = ANY($1)" that is a scan of the whole table on every batch. Batch
// statements are few and heavy, so planning them each time is cheap; simple
// reads keep their cached plans.
func customPlans(ctx context.Context, tx *sqlx.Tx) error {
	_, err := tx.ExecContext(ctx, `SELECT set_config('plan_cache_mode', 'force_custom_plan', true)`)
	return err
}
