package eventstoretest

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/salesos/salesos/eventstore"
)

// AmbiguousCommit checks how a backend settles a commit whose answer was
// lost. setFault installs the backend's commit fault (see the backends'
// SetCommitFault): it runs before COMMIT, and an error makes the outcome
// unknown to the writer, having committed first when commit is true.
//
// A batch that did commit must be answered as stored, with the positions
// the store holds; one that did not must fail as unavailable and leave
// nothing behind.
func AmbiguousCommit(t *testing.T, s eventstore.Store, setFault func(func() (commit bool, err error))) {
	var mode atomic.Int32 // 0 no fault, 1 commit then lose the answer, 2 lose it without committing
	setFault(func() (bool, error) {
		switch mode.Swap(0) {
		case 1:
			return true, io.ErrUnexpectedEOF
		case 2:
			return false, io.ErrUnexpectedEOF
		}
		return false, nil
	})

	committed := stream(t)
	mode.Store(1)
	r, err := s.Append(ctx(t), committed, eventstore.NoStream, ev("a", `{}`), ev("b", `{}`))
	if err != nil {
		t.Fatalf("append whose commit went through but whose answer was lost: %v, want success", err)
	}
	got, err := s.ReadStream(ctx(t), committed, 1, 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("stream after the ambiguous commit: %d events, %v", len(got), err)
	}
	if r.Version != 2 || r.Position != got[1].Position {
		t.Fatalf("answer %+v, stored version 2 at position %d", r, got[1].Position)
	}

	lost := stream(t)
	mode.Store(2)
	_, err = s.Append(ctx(t), lost, eventstore.NoStream, ev("a", `{}`))
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append whose commit was lost: %v, want ErrUnavailable", err)
	}
	if _, err := s.ReadStream(ctx(t), lost, 1, 10); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("the lost append left something behind: %v", err)
	}
	// The writer goes on as before.
	mustAppend(t, s, lost, eventstore.NoStream, ev("a", `{}`))
}

// SameBatchReplay checks the event-id rule inside one group-commit batch:
// identical appends (a writer's retry racing its first try) that the
// writer commits together all succeed with one result, and the events are
// stored once. setFault is the backend's commit fault, used here only to
// hold the writer in a commit while the identical appends queue up behind
// it, so they share the next batch.
//
// queued reports how many appends wait for the writer.
func SameBatchReplay(t *testing.T, s eventstore.Store, setFault func(func() (commit bool, err error)), queued func() int) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	setFault(func() (bool, error) {
		if once.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
		return false, nil
	})
	hold := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx(t), stream(t), eventstore.NoStream, ev("hold", `{}`))
		hold <- err
	}()
	<-entered

	st := stream(t)
	same := []eventstore.EventData{ev("x", `{}`), ev("y", `{}`)}
	const n = 4
	type res struct {
		r   eventstore.AppendResult
		err error
	}
	out := make(chan res, n)
	for range n {
		go func() {
			r, err := s.Append(ctx(t), st, eventstore.NoStream, same...)
			out <- res{r, err}
		}()
	}
	// Poll until the writer would take them together: there is no signal
	// for "queued", and the batch forms when release lets the writer go.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && queued() < n {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-hold; err != nil {
		t.Fatal(err)
	}
	var first eventstore.AppendResult
	for i := range n {
		r := <-out
		if r.err != nil {
			t.Fatalf("identical append %d: %v", i, r.err)
		}
		if i == 0 {
			first = r.r
		} else if r.r != first {
			t.Fatalf("identical appends answered %+v and %+v", first, r.r)
		}
	}
	if all, err := eventstore.ReadFullStream(ctx(t), s, st); err != nil || len(all) != 2 {
		t.Fatalf("stream has %d events (%v), want 2", len(all), err)
	}
}
