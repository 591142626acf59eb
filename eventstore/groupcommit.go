package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
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
// means the transaction as a whole failed and nothing was written.
type CommitFunc func(batch []PendingAppend) ([]AppendOutcome, error)

// GroupCommitter is the write path the SQL backends share: Append queues,
// a single writer goroutine commits whatever has queued up while the
// previous commit ran as one batch, so one commit (one disk flush) carries
// many appends. If a batch fails as a whole, its appends are retried one by
// one so one bad append cannot fail its neighbours.
type GroupCommitter struct {
	commit    CommitFunc
	committed func()
	maxBatch  int
	queue     chan *request
	stop      chan struct{}
	exited    chan struct{} // closed when the writer has returned
	closeOnce sync.Once
}

type request struct {
	ctx    context.Context
	p      PendingAppend
	result chan AppendOutcome
}

// NewGroupCommitter starts the writer. committed, if set, runs after every
// successful commit (the backends wake their subscriptions there).
func NewGroupCommitter(maxBatch int, commit CommitFunc, committed func()) *GroupCommitter {
	g := &GroupCommitter{
		commit: commit, committed: committed, maxBatch: maxBatch,
		queue: make(chan *request, maxBatch*4), stop: make(chan struct{}), exited: make(chan struct{}),
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
	// Once queued, wait for the outcome even if ctx ends meanwhile: the
	// batch may already be committing, and reporting a failure for an
	// append that did commit would make callers retry a successful write.
	// If Close stopped the writer before it took this append, nobody will
	// answer (every answer the writer gave is buffered in req.result).
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
		for len(batch) < g.maxBatch {
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
	// Drop appends whose callers gave up before we started.
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.result <- AppendOutcome{Err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	pending := make([]PendingAppend, len(live))
	for i, r := range live {
		pending[i] = r.p
	}
	outcomes, err := g.commit(pending)
	if err == nil {
		for i, r := range live {
			r.result <- outcomes[i]
		}
		g.notify()
		return
	}
	if len(live) == 1 {
		live[0].result <- AppendOutcome{Err: err}
		return
	}
	for _, r := range live {
		out, err := g.commit([]PendingAppend{r.p})
		if err != nil {
			r.result <- AppendOutcome{Err: err}
			continue
		}
		r.result <- out[0]
	}
	g.notify()
}

func (g *GroupCommitter) notify() {
	if g.committed != nil {
		g.committed()
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
