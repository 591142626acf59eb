package eventstoretest

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"

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
