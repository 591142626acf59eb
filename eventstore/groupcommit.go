package eventstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// ErrClosed is returned by appends to a closed store.
var ErrClosed = errors.New("event store closed")

// PendingAppend is one queued append, as a backend's commit function sees it.
type PendingAppend struct {
	Stream   string
	Expected int64
	Events   []EventData
	IDs      []string // the events' ids in canonical UUID form
}

// AppendOutcome is the fate of one PendingAppend in a committed batch.
type AppendOutcome struct {
	Result AppendResult
	Err    error // e.g. a *VersionConflictError for this append alone
}

// CommitFunc commits a batch in one transaction. It decides each append's
// expected version on its own (outcomes line up with the batch); an error
// means the transaction as a whole failed and nothing was written — unless
// it is an *AmbiguousCommitError, which says the outcome is unknown.
//
// A CommitFunc should classify its errors: ErrInvalidAppend for errors that
// point at one append (constraint violations, data the database refuses),
// so the committer retries the batch's appends one by one; ErrUnavailable
// (see Unavailable) for a lost or refused connection, which fails the whole
// batch at once — retrying its appends one by one against a database that
// is away would only multiply the wait.
type CommitFunc func(batch []PendingAppend) ([]AppendOutcome, error)

// ResolveFunc looks event ids up in the store, on a connection of its own
// (not the one that failed), and returns where each id that exists is
// stored. It is how an ambiguous commit is settled.
type ResolveFunc func(ctx context.Context, ids []string) (map[string]StoredEvent, error)

// StoredEvent is where an event id was found.
type StoredEvent struct {
	Stream   string
	Version  int64
	Position uint64
}

// StoredRows is what database/sql's and pgx's query results both offer.
type StoredRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanStored reads rows of (event id, stream, version, position), the
// answer of a backend's event-id lookup, keyed by event id.
func ScanStored(rows StoredRows) (map[string]StoredEvent, error) {
	found := map[string]StoredEvent{}
	for rows.Next() {
		var id string
		var e StoredEvent
		var pos int64
		if err := rows.Scan(&id, &e.Stream, &e.Version, &pos); err != nil {
			return nil, err
		}
		e.Position = uint64(pos)
		found[id] = e
	}
	return found, rows.Err()
}

// ErrAmbiguousCommit is matched by *AmbiguousCommitError.
var ErrAmbiguousCommit = errors.New("commit outcome unknown")

// AmbiguousCommitError is what a CommitFunc returns when the connection was
// lost after COMMIT was sent and before its answer arrived: the batch may or
// may not be stored. Planned holds the outcomes the batch would have had if
// committed (version conflicts stay conflicts either way).
type AmbiguousCommitError struct {
	Planned []AppendOutcome
	Err     error
}

func (e *AmbiguousCommitError) Error() string {
	return "event store: connection lost around COMMIT: " + e.Err.Error()
}
func (e *AmbiguousCommitError) Unwrap() []error { return []error{ErrAmbiguousCommit, e.Err} }

// GroupCommitOptions configure a GroupCommitter. Zero values mean the
// documented defaults.
type GroupCommitOptions struct {
	// MaxBatch caps how many appends share one commit. Default 512.
	MaxBatch int
	// Commit commits a batch (required).
	Commit CommitFunc
	// Committed, if set, runs after every commit that stored something
	// (the backends wake their subscriptions there).
	Committed func()
	// Resolve settles ambiguous commits. Without it an ambiguous commit
	// fails its appends with ErrUnavailable (outcome unknown).
	Resolve ResolveFunc
	// ResolveTimeout bounds how long the writer keeps trying to settle one
	// ambiguous commit while the database is away. Default 30s; after it
	// the appends fail with ErrUnavailable and ErrAmbiguousCommit.
	ResolveTimeout time.Duration
}

// GroupCommitter is the write path the SQL backends share: Append queues,
// a single writer goroutine commits whatever has queued up while the
// previous commit ran as one batch, so one commit (one disk flush) carries
// many appends.
//
// Failure handling, in order of what the batch's commit reports:
//   - an error that points at one append (ErrInvalidAppend): the appends
//     are retried one by one so one bad append cannot fail its neighbours;
//   - an ambiguous commit: the batch's event ids are looked up (Resolve)
//     before anyone is answered, so a committed write is never reported as
//     failed and a lost one never as stored;
//   - anything else (the database is away): every append of the batch fails
//     at once, wrapped with ErrUnavailable when it is an outage.
//
// A caller whose context ends while its append is still queued returns at
// once with the context's error and the writer skips the append. Once the
// writer has taken it into a batch, the caller waits for the outcome: the
// batch may be committing, and reporting a failure for an append that did
// commit would make callers retry a successful write. That wait is bounded
// by the backend's commit deadline plus ResolveTimeout.
type GroupCommitter struct {
	opts      GroupCommitOptions
	queue     chan *request
	stop      chan struct{}
	exited    chan struct{} // closed when the writer has returned
	closeOnce sync.Once
}

// Request states: the caller and the writer race for a queued request with
// a compare-and-swap, so exactly one of them decides its fate.
const (
	stateQueued int32 = iota
	stateTaken
	stateAbandoned
)

type request struct {
	ctx    context.Context
	p      PendingAppend
	state  atomic.Int32
	result chan AppendOutcome
}

// NewGroupCommitter starts the writer. committed, if set, runs after every
// successful commit (the backends wake their subscriptions there).
func NewGroupCommitter(maxBatch int, commit CommitFunc, committed func()) *GroupCommitter {
	return StartGroupCommitter(GroupCommitOptions{MaxBatch: maxBatch, Commit: commit, Committed: committed})
}

// StartGroupCommitter starts the writer with the given options.
func StartGroupCommitter(opts GroupCommitOptions) *GroupCommitter {
	opts.MaxBatch = cmp.Or(max(opts.MaxBatch, 0), 512)
	opts.ResolveTimeout = cmp.Or(max(opts.ResolveTimeout, 0), 30*time.Second)
	g := &GroupCommitter{
		opts:  opts,
		queue: make(chan *request, opts.MaxBatch*4), stop: make(chan struct{}), exited: make(chan struct{}),
	}
	go g.writer()
	return g
}

// Close stops the writer after its current batch; appends still queued
// fail with ErrClosed.
func (g *GroupCommitter) Close() {
	g.closeOnce.Do(func() { close(g.stop) })
	<-g.exited
}

// Queued is how many appends wait for the writer (for tests and metrics).
func (g *GroupCommitter) Queued() int { return len(g.queue) }

// Append validates and queues an append and waits for its outcome.
func (g *GroupCommitter) Append(ctx context.Context, stream string, expected int64, events []EventData) (AppendResult, error) {
	ids, err := ValidateAppend(stream, expected, events)
	if err != nil {
		return AppendResult{}, err
	}
	req := &request{ctx: ctx, p: PendingAppend{Stream: stream, Expected: expected, Events: events, IDs: ids}, result: make(chan AppendOutcome, 1)}
	select {
	case <-g.stop:
		return AppendResult{}, ErrClosed
	default:
	}
	select {
	case g.queue <- req:
	case <-ctx.Done():
		return AppendResult{}, ctx.Err()
	case <-g.stop:
		return AppendResult{}, ErrClosed
	}
	select {
	case r := <-req.result:
		return r.Result, r.Err
	case <-ctx.Done():
		if req.state.CompareAndSwap(stateQueued, stateAbandoned) {
			return AppendResult{}, ctx.Err() // the writer will skip it
		}
		// Taken into a batch: wait for what the batch resolves to.
	case <-g.exited:
	}
	return g.await(req)
}

// await waits for the writer's answer to a request it took, or reports
// ErrClosed when the writer stopped without taking it (every answer the
// writer gave is buffered in req.result).
func (g *GroupCommitter) await(req *request) (AppendResult, error) {
	select {
	case r := <-req.result:
		return r.Result, r.Err
	case <-g.exited:
		select {
		case r := <-req.result:
			return r.Result, r.Err
		default:
			return AppendResult{}, ErrClosed
		}
	}
}

func (g *GroupCommitter) writer() {
	defer close(g.exited)
	for {
		var first *request
		select {
		case first = <-g.queue:
		case <-g.stop:
			g.failQueued()
			return
		}
		batch := []*request{first}
	drain:
		for len(batch) < g.opts.MaxBatch {
			select {
			case r := <-g.queue:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		g.commitBatch(batch)
	}
}

func (g *GroupCommitter) failQueued() {
	for {
		select {
		case r := <-g.queue:
			r.result <- AppendOutcome{Err: ErrClosed}
		default:
			return
		}
	}
}

func (g *GroupCommitter) commitBatch(batch []*request) {
	// Take the appends whose callers are still waiting; skip the others.
	live := batch[:0]
	for _, r := range batch {
		if !r.state.CompareAndSwap(stateQueued, stateTaken) {
			continue // abandoned: its caller already returned
		}
		if err := r.ctx.Err(); err != nil {
			r.result <- AppendOutcome{Err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	outcomes, err := g.commitResolved(live)
	if err == nil {
		g.deliver(live, outcomes)
		return
	}
	if len(live) == 1 || !errors.Is(err, ErrInvalidAppend) {
		for _, r := range live {
			r.result <- AppendOutcome{Err: err}
		}
		return
	}
	// One append is at fault: find it by committing each alone. A failure
	// that is not about one append (the database went away meanwhile)
	// ends the search for everyone left, not after one deadline each.
	for i, r := range live {
		outs, err := g.commitResolved(live[i : i+1])
		if err != nil && !errors.Is(err, ErrInvalidAppend) {
			for _, rest := range live[i:] {
				rest.result <- AppendOutcome{Err: err}
			}
			return
		}
		if err != nil {
			r.result <- AppendOutcome{Err: err}
			continue
		}
		g.deliver(live[i:i+1], outs)
	}
}

func (g *GroupCommitter) deliver(reqs []*request, outcomes []AppendOutcome) {
	stored := false
	for i, r := range reqs {
		r.result <- outcomes[i]
		stored = stored || outcomes[i].Err == nil
	}
	if stored {
		g.notify()
	}
}

// commitResolved commits reqs as one batch and settles an ambiguous
// outcome. It returns per-append outcomes, or an error for the batch as a
// whole (nothing of it stored).
func (g *GroupCommitter) commitResolved(reqs []*request) ([]AppendOutcome, error) {
	pending := make([]PendingAppend, len(reqs))
	for i, r := range reqs {
		pending[i] = r.p
	}
	outcomes, err := g.opts.Commit(pending)
	if err == nil {
		return outcomes, nil
	}
	var amb *AmbiguousCommitError
	if !errors.As(err, &amb) {
		return nil, Unavailable(err)
	}
	return g.resolve(pending, amb), nil
}

// resolve settles an ambiguous commit by looking the batch's event ids up,
// retrying while the database is away, for at most ResolveTimeout. An
// append whose events are all stored succeeded (with the stored positions);
// one whose events are not there failed, and says the store is unavailable
// so its caller retries later.
func (g *GroupCommitter) resolve(batch []PendingAppend, amb *AmbiguousCommitError) []AppendOutcome {
	var ids []string
	for i, p := range batch {
		if i < len(amb.Planned) && amb.Planned[i].Err != nil {
			continue // refused inside the transaction: nothing to look for
		}
		ids = append(ids, p.IDs...)
	}
	out := make([]AppendOutcome, len(batch))
	var found map[string]StoredEvent
	var err error
	if g.opts.Resolve == nil {
		err = errors.New("no resolver")
	} else {
		found, err = g.lookup(ids)
	}
	for i, p := range batch {
		if i < len(amb.Planned) && amb.Planned[i].Err != nil {
			out[i] = amb.Planned[i]
			continue
		}
		if err != nil {
			out[i].Err = fmt.Errorf("%w: %w: looking the batch up failed: %w (commit: %w)", ErrUnavailable, ErrAmbiguousCommit, err, amb.Err)
			continue
		}
		n := 0
		var last StoredEvent
		for _, id := range p.IDs {
			if e, ok := found[id]; ok && e.Stream == p.Stream {
				n++
				last = e
			}
		}
		switch n {
		case len(p.IDs):
			out[i].Result = AppendResult{Version: last.Version, Position: last.Position}
		default:
			out[i].Err = fmt.Errorf("%w: the append was not stored (connection lost around COMMIT: %w)", ErrUnavailable, amb.Err)
		}
	}
	return out
}

func (g *GroupCommitter) lookup(ids []string) (map[string]StoredEvent, error) {
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.ResolveTimeout)
	defer cancel()
	pause := 50 * time.Millisecond
	for {
		found, err := g.opts.Resolve(ctx, ids)
		if err == nil {
			return found, nil
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-g.stop:
			t.Stop()
			return nil, err
		case <-t.C:
		}
		pause = min(pause*2, time.Second)
	}
}

func (g *GroupCommitter) notify() {
	if g.opts.Committed != nil {
		g.opts.Committed()
	}
}

// ValidateAppend refuses what no backend stores, and returns the event ids
// in canonical UUID form.
func ValidateAppend(stream string, expected int64, events []EventData) ([]string, error) {
	if stream == "" {
		return nil, fmt.Errorf("%w: empty stream name", ErrInvalidAppend)
	}
	if !utf8.ValidString(stream) {
		return nil, fmt.Errorf("%w: stream name is not UTF-8", ErrInvalidAppend)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: no events", ErrInvalidAppend)
	}
	if expected < Any {
		return nil, fmt.Errorf("%w: expected version %d", ErrInvalidAppend, expected)
	}
	ids := make([]string, len(events))
	for i, e := range events {
		if e.ID == "" || e.Type == "" {
			return nil, fmt.Errorf("%w: event %d needs an id and a type", ErrInvalidAppend, i)
		}
		id, err := uuid.Parse(e.ID)
		if err != nil {
			return nil, fmt.Errorf("%w: event %d: id %q is not a UUID", ErrInvalidAppend, i, e.ID)
		}
		ids[i] = id.String()
		if !json.Valid(e.Data) || (len(e.Metadata) > 0 && !json.Valid(e.Metadata)) {
			return nil, fmt.Errorf("%w: event %d: data and metadata must be JSON", ErrInvalidAppend, i)
		}
	}
	return ids, nil
}

// ExpectationHolds reports whether a stream at version current satisfies
// an append's expected version (Any, NoStream or an exact version).
func ExpectationHolds(expected, current int64) bool {
	switch expected {
	case Any:
		return true
	case NoStream:
		return current == 0
	default:
		return expected == current
	}
}

// ErrDuplicateEventID is returned for an append whose event ids are already
// stored somewhere else than where the append would put them (another
// stream, another version, or only some of them). It wraps
// ErrInvalidAppend: the append is refused, nothing is written.
var ErrDuplicateEventID = fmt.Errorf("%w: duplicate event id", ErrInvalidAppend)

// ReplayOrDuplicate applies the event-id rule every backend shares, the
// rule of EventStoreDB: appending events whose ids are already stored, at
// the place they are stored, is an idempotent success that answers with the
// stored result and writes nothing (a writer retrying after a lost answer
// learns what it wrote). "The place" is the stream and the version the
// expected version points to (NoStream: the start; an exact version v: right
// after v; Any: wherever the run of ids starts). Any other clash with
// stored ids is ErrDuplicateEventID.
//
// found holds the stored events among the append's ids. handled is false
// when none of them is stored: the append proceeds normally.
func ReplayOrDuplicate(p PendingAppend, found map[string]StoredEvent) (out AppendOutcome, handled bool) {
	n := 0
	for _, id := range p.IDs {
		if _, ok := found[id]; ok {
			n++
		}
	}
	if n == 0 {
		return AppendOutcome{}, false
	}
	dup := AppendOutcome{Err: fmt.Errorf("%w: stream %q: an event id of this append is already stored elsewhere", ErrDuplicateEventID, p.Stream)}
	if n != len(p.IDs) {
		return dup, true
	}
	first := found[p.IDs[0]]
	for i, id := range p.IDs {
		e := found[id]
		if e.Stream != p.Stream || e.Version != first.Version+int64(i) {
			return dup, true
		}
	}
	switch start := first.Version - 1; p.Expected {
	case Any:
	case NoStream:
		if start != 0 {
			return dup, true
		}
	default:
		if start != p.Expected {
			return dup, true
		}
	}
	last := found[p.IDs[len(p.IDs)-1]]
	return AppendOutcome{Result: AppendResult{Version: last.Version, Position: last.Position}}, true
}
