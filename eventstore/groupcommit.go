package eventstore

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
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

func (g *GroupCommitter) notify() {
	if g.opts.Committed != nil {
		g.opts.Committed()
	}
}
