// Committing one group-commit batch through the write handle, looking ids
// up when a commit's outcome is unknown, and mapping SQLite's constraint
// errors to the event store's.

package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlitedriver "modernc.org/sqlite"

	"github.com/salesos/salesos/eventstore"
)

// timeLayout is recorded_at's text form: RFC 3339, UTC, six fractional
// digits (fixed width, so it sorts as text).
const timeLayout = "2006-01-02T15:04:05.000000Z"

func (s *Store) tryCommit(batch []eventstore.PendingAppend) (results []eventstore.AppendOutcome, err error) {
	// The batch's own deadline: long enough for a slow disk or a lock held
	// by another process, short enough that a wedged write does not stall
	// every writer forever.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The write handle begins IMMEDIATE (OpenDB's _txlock): the write lock
	// is taken here, before the head is read, so no other process can
	// commit between that read and this commit.
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("event store: begin: %w", err)
	}
	defer tx.Rollback()

	streams := make([]string, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	for _, r := range batch {
		if !seen[r.Stream] {
			seen[r.Stream] = true
			streams = append(streams, r.Stream)
		}
	}
	streamsJSON, err := json.Marshal(streams)
	if err != nil {
		return nil, err
	}
	versions := make(map[string]int64, len(streams))
	rows, err := tx.StmtContext(ctx, s.stmts.versions).QueryContext(ctx, string(streamsJSON))
	if err != nil {
		return nil, fmt.Errorf("event store: read versions: %w", err)
	}
	for rows.Next() {
		var id string
		var v sql.NullInt64
		if err := rows.Scan(&id, &v); err != nil {
			rows.Close()
			return nil, err
		}
		versions[id] = v.Int64
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("event store: read versions: %w", err)
	}
	var head int64
	if err := tx.StmtContext(ctx, s.stmts.head).QueryRowContext(ctx).Scan(&head); err != nil {
		return nil, fmt.Errorf("event store: read head: %w", err)
	}
	// Event ids already stored (a writer re-sending what it wrote, see
	// eventstore.ReplayOrDuplicate).
	found, err := lookupIDs(ctx, tx.StmtContext(ctx, s.stmts.lookup), batch)
	if err != nil {
		return nil, fmt.Errorf("event store: look up event ids: %w", err)
	}

	now := time.Now().UTC().Format(timeLayout)
	results = make([]eventstore.AppendOutcome, len(batch))
	args := make([]any, 0, 8*insertChunk)
	var insertN, insert1 *sql.Stmt
	inserted := 0
	for i, r := range batch {
		current := versions[r.Stream]
		if out, ok := eventstore.SettleWithoutWriting(r, found, current); ok {
			results[i] = out
			continue
		}
		for j, e := range r.Events {
			head++
			current++
			// Planned events count as stored for the appends after
			// this one in the batch (see the PostgreSQL backend).
			found[r.IDs[j]] = eventstore.StoredEvent{Stream: r.Stream, Version: current, Position: uint64(head)}
			m := string(e.Metadata)
			if m == "" {
				m = "{}"
			}
			// Strings, not []byte: a []byte would be bound as a BLOB.
			args = append(args, head, r.IDs[j], r.Stream, current, e.Type, string(e.Data), m, now)
			inserted++
			if len(args) == 8*insertChunk {
				if insertN == nil {
					insertN = tx.StmtContext(ctx, s.stmts.insertN)
				}
				if _, err := insertN.ExecContext(ctx, args...); err != nil {
					return nil, classify(err)
				}
				args = args[:0]
			}
		}
		versions[r.Stream] = current
		results[i] = eventstore.AppendOutcome{Result: eventstore.AppendResult{Version: current, Position: uint64(head)}}
	}
	if inserted == 0 {
		return results, nil // every append was a version conflict
	}
	for k := 0; k < len(args); k += 8 {
		if insert1 == nil {
			insert1 = tx.StmtContext(ctx, s.stmts.insert1)
		}
		if _, err := insert1.ExecContext(ctx, args[k:k+8]...); err != nil {
			return nil, classify(err)
		}
	}
	if s.commitFault != nil {
		if commit, err := s.commitFault(); err != nil {
			if commit {
				tx.Commit()
			}
			return nil, &eventstore.AmbiguousCommitError{Planned: results, Err: err}
		}
	}
	if err := tx.Commit(); err != nil {
		// A failed COMMIT of a local file can still have reached the disk
		// (an I/O error reported after the WAL write): let the committer
		// look the ids up rather than guess.
		return nil, &eventstore.AmbiguousCommitError{Planned: results, Err: fmt.Errorf("event store: commit: %w", err)}
	}
	return results, nil
}

func lookupIDs(ctx context.Context, st *sql.Stmt, batch []eventstore.PendingAppend) (map[string]eventstore.StoredEvent, error) {
	var ids []string
	for _, p := range batch {
		ids = append(ids, p.IDs...)
	}
	js, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, string(js))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return eventstore.ScanStored(rows)
}

// resolve looks event ids up through the read pool, not the writer
// connection whose commit went wrong.
func (s *Store) resolve(ctx context.Context, ids []string) (map[string]eventstore.StoredEvent, error) {
	return lookupIDs(ctx, s.reads.lookup, []eventstore.PendingAppend{{IDs: ids}})
}

func classify(err error) error {
	var se *sqlitedriver.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case codeConstraintUnique:
			if strings.Contains(err.Error(), "events.event_id") {
				return fmt.Errorf("%w (%v)", eventstore.ErrDuplicateEventID, err)
			}
		case codeConstraintCheck:
			return fmt.Errorf("%w: %v", eventstore.ErrInvalidAppend, err)
		}
	}
	return fmt.Errorf("event store: insert: %w", err)
}
