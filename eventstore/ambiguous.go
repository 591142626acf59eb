// Settling ambiguous commits: when the connection is lost around COMMIT,
// the committer looks the batch's event ids up before it answers anyone,
// so a stored write is never reported as failed nor a lost one as stored.

package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

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
