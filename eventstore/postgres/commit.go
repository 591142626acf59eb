// Committing one group-commit batch: the pipelined two-phase transaction
// under the advisory lock, looking ids up when a commit's outcome is
// unknown, and mapping PostgreSQL's errors to the event store's.

package postgres

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/salesos/salesos/eventstore"
)

func (s *Store) tryCommit(batch []eventstore.PendingAppend) ([]eventstore.AppendOutcome, error) {
	// The batch's own deadline: long enough for a slow disk, short enough
	// that a wedged connection does not stall every writer forever.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("event store: connect: %w", err)
	}
	defer conn.Close()
	var results []eventstore.AppendOutcome
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		var err error
		results, err = commitOn(ctx, pc, batch, s.commitFault)
		if err != nil && !pc.PgConn().IsClosed() && pc.PgConn().TxStatus() != 'I' {
			// Leave the connection idle for the next user of the pool.
			if _, rerr := pc.Exec(ctx, "ROLLBACK"); rerr != nil {
				return errors.Join(err, driver.ErrBadConn)
			}
		}
		return err
	})
	return results, err
}

// commitOn writes a batch in one transaction, in two round trips: the
// statements of each phase are pipelined (sent together, answered
// together). The writer is the only appender in this process, so the
// round trips, not the SQL, bound how many batches it commits a second.
func commitOn(ctx context.Context, pc *pgx.Conn, batch []eventstore.PendingAppend, fault func() (bool, error)) ([]eventstore.AppendOutcome, error) {
	streams := make([]string, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	for _, r := range batch {
		if !seen[r.Stream] {
			seen[r.Stream] = true
			streams = append(streams, r.Stream)
		}
	}

	// Phase 1: begin, take the lock, read each stream's version and the
	// global head. Custom plans for this transaction: pgx caches prepared
	// statements, and a generic plan made while the table was small would
	// scan it. Each stream is one backward probe of the (stream_id,
	// version) index; "= ANY(array) GROUP BY" would be planned as a scan.
	var b pgx.Batch
	b.Queue("BEGIN")
	b.Queue(`SELECT set_config('plan_cache_mode', 'force_custom_plan', true),
		pg_advisory_xact_lock(hashtext(current_schema() || ':salesos:events'))`)
	b.Queue(`
		SELECT s, COALESCE((SELECT e.version FROM events e WHERE e.stream_id = s ORDER BY e.version DESC LIMIT 1), 0)
		FROM unnest($1::text[]) AS s
		UNION ALL
		SELECT NULL, COALESCE((SELECT max(position) FROM events), 0)`, streams)
	// Event ids already stored (a writer re-sending what it wrote, see
	// eventstore.ReplayOrDuplicate); one index probe each.
	b.Queue(`SELECT event_id::text, stream_id, version, position FROM events WHERE event_id = ANY($1::uuid[])`, allIDs(batch))
	versions := make(map[string]int64, len(streams))
	var head int64
	br := pc.SendBatch(ctx, &b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("event store: begin: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("event store: lock: %w", err)
	}
	rows, err := br.Query()
	if err == nil {
		for rows.Next() {
			var id *string
			var v int64
			if err = rows.Scan(&id, &v); err != nil {
				break
			}
			if id != nil {
				versions[*id] = v
			} else {
				head = v
			}
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		br.Close()
		return nil, fmt.Errorf("event store: read versions: %w", err)
	}
	found, err := scanStored(br)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("event store: look up event ids: %w", err)
	}

	results := make([]eventstore.AppendOutcome, len(batch))
	var (
		positions []int64
		ids       []string
		streamIDs []string
		vers      []int64
		types     []string
		data      []string
		meta      []string
	)
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
			// this one in the batch: a writer's retry that lands in the
			// same batch as its first try is a replay, not a conflict.
			found[r.IDs[j]] = eventstore.StoredEvent{Stream: r.Stream, Version: current, Position: uint64(head)}
			positions = append(positions, head)
			ids = append(ids, e.ID)
			streamIDs = append(streamIDs, r.Stream)
			vers = append(vers, current)
			types = append(types, e.Type)
			data = append(data, string(e.Data))
			m := string(e.Metadata)
			if m == "" {
				m = "{}"
			}
			meta = append(meta, m)
		}
		versions[r.Stream] = current
		results[i] = eventstore.AppendOutcome{Result: eventstore.AppendResult{Version: current, Position: uint64(head)}}
	}

	// Phase 2: insert and commit. The NOTIFY rides in the insert
	// statement; PostgreSQL delivers it at commit.
	b = pgx.Batch{}
	if len(positions) > 0 {
		b.Queue(`
			WITH ins AS (
				INSERT INTO events (position, event_id, stream_id, version, type, data, metadata)
				SELECT p, e::uuid, s, v, t, d::json, m::json
				FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[]) AS x(p, e, s, v, t, d, m)
				RETURNING 1
			)
			SELECT pg_notify($8, current_schema()) WHERE EXISTS (SELECT 1 FROM ins)`,
			positions, ids, streamIDs, vers, types, data, meta, notifyChannel)
	}
	b.Queue("COMMIT")
	if fault != nil {
		if commit, err := fault(); err != nil {
			if !commit {
				return nil, &eventstore.AmbiguousCommitError{Planned: results, Err: err}
			}
			// Commit for real and read both answers, then drop the
			// connection as if the answer had been lost on the way.
			fb := pc.SendBatch(ctx, &b)
			for range b.Len() {
				if _, cerr := fb.Exec(); cerr != nil {
					break
				}
			}
			fb.Close()
			pc.PgConn().Close(ctx)
			return nil, &eventstore.AmbiguousCommitError{Planned: results, Err: err}
		}
	}
	br = pc.SendBatch(ctx, &b)
	if len(positions) > 0 {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, phase2Error(err, results, classify)
		}
	}
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, phase2Error(err, results, func(err error) error { return fmt.Errorf("event store: commit: %w", err) })
	}
	if err := br.Close(); err != nil {
		return nil, phase2Error(err, results, func(err error) error { return fmt.Errorf("event store: commit: %w", err) })
	}
	return results, nil
}

// phase2Error tells apart the failures of the insert-and-commit round trip.
// An answer from the server (a PgError: a constraint, bad data) means the
// transaction failed and nothing is stored. A request that never left
// (pgconn.SafeToRetry) stored nothing either. Anything else — the
// connection lost after INSERT and COMMIT were sent — leaves the outcome
// unknown: the committer looks the ids up before answering.
func phase2Error(err error, planned []eventstore.AppendOutcome, answered func(error) error) error {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && !eventstore.IsUnavailable(err):
		return answered(err)
	case pgconn.SafeToRetry(err):
		return eventstore.Unavailable(fmt.Errorf("event store: commit not sent: %w", err))
	}
	return &eventstore.AmbiguousCommitError{Planned: planned, Err: err}
}

func allIDs(batch []eventstore.PendingAppend) []string {
	var ids []string
	for _, p := range batch {
		ids = append(ids, p.IDs...)
	}
	return ids
}

func scanStored(br pgx.BatchResults) (map[string]eventstore.StoredEvent, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return eventstore.ScanStored(rows)
}

// resolve looks event ids up on a pooled connection (never the one whose
// commit was lost: database/sql discards that one).
func (s *Store) resolve(ctx context.Context, ids []string) (map[string]eventstore.StoredEvent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT event_id::text, stream_id, version, position FROM events WHERE event_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return eventstore.ScanStored(rows)
}

func classify(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation: an event id used twice
			return fmt.Errorf("%w (%s)", eventstore.ErrDuplicateEventID, pgErr.ConstraintName)
		case "22P02", "22P03": // invalid text representation: a malformed uuid
			return fmt.Errorf("%w: %s", eventstore.ErrInvalidAppend, pgErr.Message)
		}
	}
	return fmt.Errorf("event store: insert: %w", err)
}
