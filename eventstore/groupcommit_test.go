package eventstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

func testEvent() EventData {
	return EventData{ID: uuid.NewString(), Type: "t", Data: []byte(`{}`)}
}

// gate is a CommitFunc whose first call blocks until released, so a test
// can hold the writer inside a commit while it queues more appends.
type gate struct {
	mu      sync.Mutex
	calls   [][]string // stream names of each batch
	entered chan struct{}
	release chan struct{}
	fn      func(batch []PendingAppend) ([]AppendOutcome, error)
}

func newGate(fn func([]PendingAppend) ([]AppendOutcome, error)) *gate {
	return &gate{entered: make(chan struct{}), release: make(chan struct{}), fn: fn}
}

func (g *gate) commit(batch []PendingAppend) ([]AppendOutcome, error) {
	g.mu.Lock()
	var names []string
	for _, p := range batch {
		names = append(names, p.Stream)
	}
	g.calls = append(g.calls, names)
	first := len(g.calls) == 1
	g.mu.Unlock()
	if first {
		close(g.entered)
		<-g.release
	}
	return g.fn(batch)
}

func (g *gate) batches() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]string(nil), g.calls...)
}

func okAll(batch []PendingAppend) ([]AppendOutcome, error) {
	out := make([]AppendOutcome, len(batch))
	for i := range batch {
		out[i].Result = AppendResult{Version: int64(len(batch[i].Events)), Position: uint64(i + 1)}
	}
	return out, nil
}

func waitQueued(t *testing.T, g *GroupCommitter, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for len(g.queue) < n {
		select {
		case <-deadline:
			t.Fatalf("%d appends queued, want %d", len(g.queue), n)
		case <-tick.C:
		}
	}
}

type appendRes struct {
	res AppendResult
	err error
}

func goAppend(ctx context.Context, g *GroupCommitter, stream string) chan appendRes {
	ch := make(chan appendRes, 1)
	go func() {
		r, err := g.Append(ctx, stream, Any, []EventData{testEvent()})
		ch <- appendRes{r, err}
	}()
	return ch
}

func recv(t *testing.T, ch chan appendRes) appendRes {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("append did not return")
		return appendRes{}
	}
}

// A caller whose context ends while its append waits in the queue gets its
// context error at once (not when the writer gets to it), and the writer
// never commits that append.
func TestQueuedAppendHonoursItsContext(t *testing.T) {
	gt := newGate(okAll)
	g := NewGroupCommitter(8, gt.commit, nil)
	defer g.Close()
	first := goAppend(context.Background(), g, "first")
	<-gt.entered

	ctx, cancel := context.WithCancel(context.Background())
	queued := goAppend(ctx, g, "queued")
	waitQueued(t, g, 1)
	cancel()
	select {
	case r := <-queued:
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled queued append: %v, want context.Canceled", r.err)
		}
	case <-time.After(20 * time.Second):
		close(gt.release)
		t.Fatal("a queued append whose context ended still waits for the writer")
	}
	close(gt.release)
	if r := recv(t, first); r.err != nil {
		t.Fatal(r.err)
	}
	// The writer is free again; one more append proves it skipped the
	// abandoned one rather than committing it.
	if r := recv(t, goAppend(context.Background(), g, "after")); r.err != nil {
		t.Fatal(r.err)
	}
	for _, b := range gt.batches() {
		for _, s := range b {
			if s == "queued" {
				t.Fatalf("the abandoned append was committed: batches %v", gt.batches())
			}
		}
	}
}

// A batch that fails because the database is away fails as a whole, once:
// its appends are not retried one by one (each would wait for the same
// dead connection), and callers see ErrUnavailable.
func TestConnectionErrorFailsTheBatchOnce(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	gt := newGate(func(batch []PendingAppend) ([]AppendOutcome, error) {
		if batch[0].Stream == "first" {
			return okAll(batch)
		}
		return nil, fmt.Errorf("event store: connect: %w", refused)
	})
	g := NewGroupCommitter(8, gt.commit, nil)
	defer g.Close()
	first := goAppend(context.Background(), g, "first")
	<-gt.entered
	var waiting []chan appendRes
	for i := range 5 {
		waiting = append(waiting, goAppend(context.Background(), g, fmt.Sprint("s", i)))
	}
	waitQueued(t, g, 5)
	close(gt.release)
	recv(t, first)
	for _, ch := range waiting {
		if r := recv(t, ch); !errors.Is(r.err, ErrUnavailable) {
			t.Errorf("append in a batch whose connection was refused: %v, want ErrUnavailable", r.err)
		}
	}
	if n := len(gt.batches()); n != 2 {
		t.Fatalf("%d commits (%v), want 2: the failed batch must not be split", n, gt.batches())
	}
}

// An error that points at one append still splits the batch, so the bad
// append fails alone.
func TestInvalidAppendSplitsTheBatch(t *testing.T) {
	gt := newGate(func(batch []PendingAppend) ([]AppendOutcome, error) {
		for _, p := range batch {
			if p.Stream == "bad" {
				return nil, fmt.Errorf("%w: duplicate event id", ErrInvalidAppend)
			}
		}
		return okAll(batch)
	})
	g := NewGroupCommitter(8, gt.commit, nil)
	defer g.Close()
	first := goAppend(context.Background(), g, "first")
	<-gt.entered
	good1, bad, good2 := goAppend(context.Background(), g, "a"), goAppend(context.Background(), g, "bad"), goAppend(context.Background(), g, "b")
	waitQueued(t, g, 3)
	close(gt.release)
	recv(t, first)
	if r := recv(t, good1); r.err != nil {
		t.Error(r.err)
	}
	if r := recv(t, good2); r.err != nil {
		t.Error(r.err)
	}
	if r := recv(t, bad); !errors.Is(r.err, ErrInvalidAppend) {
		t.Errorf("bad append: %v", r.err)
	}
}

// An ambiguous commit is settled by looking the ids up, retrying while the
// lookup itself fails: stored appends succeed with the stored positions,
// missing ones fail as unavailable, planned conflicts stay conflicts.
func TestAmbiguousCommitIsResolved(t *testing.T) {
	var mu sync.Mutex
	stored := map[string]StoredEvent{}
	lookups := 0
	commit := func(batch []PendingAppend) ([]AppendOutcome, error) {
		planned := make([]AppendOutcome, len(batch))
		mu.Lock()
		defer mu.Unlock()
		for i, p := range batch {
			switch p.Stream {
			case "conflict":
				planned[i].Err = &VersionConflictError{Stream: p.Stream, Expected: 3, Actual: 1}
			case "lost":
				// sent, never stored
			default:
				for j, id := range p.IDs {
					stored[id] = StoredEvent{Stream: p.Stream, Version: int64(j + 1), Position: 100 + uint64(j)}
				}
				planned[i].Result = AppendResult{Version: 999, Position: 999} // the store's own answer wins
			}
		}
		return nil, &AmbiguousCommitError{Planned: planned, Err: syscall.ECONNRESET}
	}
	resolve := func(ctx context.Context, ids []string) (map[string]StoredEvent, error) {
		mu.Lock()
		defer mu.Unlock()
		lookups++
		if lookups < 3 {
			return nil, syscall.ECONNREFUSED
		}
		out := map[string]StoredEvent{}
		for _, id := range ids {
			if e, ok := stored[id]; ok {
				out[id] = e
			}
		}
		return out, nil
	}
	g := StartGroupCommitter(GroupCommitOptions{MaxBatch: 8, Commit: commit, Resolve: resolve})
	defer g.Close()

	ctx := context.Background()
	r, err := g.Append(ctx, "stored", NoStream, []EventData{testEvent(), testEvent()})
	if err != nil || r.Version != 2 || r.Position != 101 {
		t.Fatalf("committed append: %+v %v, want version 2 position 101 (the stored ones)", r, err)
	}
	if _, err := g.Append(ctx, "lost", NoStream, []EventData{testEvent()}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append that was not stored: %v, want ErrUnavailable", err)
	}
	if _, err := g.Append(ctx, "conflict", 3, []EventData{testEvent()}); !errors.Is(err, ErrWrongExpectedVersion) {
		t.Fatalf("planned conflict: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if lookups < 3 {
		t.Fatalf("resolver called %d times; it must retry while the database is away", lookups)
	}
}

func TestIsUnavailable(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{ErrUnavailable, true},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{ErrInvalidAppend, false},
		{&VersionConflictError{}, false},
		{errors.New("boom"), false},
	}
	for _, c := range cases {
		if got := IsUnavailable(c.err); got != c.want {
			t.Errorf("IsUnavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
