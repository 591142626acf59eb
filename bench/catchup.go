package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/pgdriver"
	"github.com/salesos/salesos/driver/sqlitedriver"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/projections"
)

// copyChunk is how many rows one COPY carries.
const copyChunk = 20_000

// runCatchUp loads o.events lead events straight into the events table,
// then times projections.CatchUp of the leads projection from position 0 to
// the head, once per batch size (with a rebuild in between).
func runCatchUp(ctx context.Context, o *options, e *env) error {
	db, store, err := openPostgresStore(ctx, e.url)
	if err != nil {
		return err
	}
	defer db.Close()
	defer store.Close()

	// Start from an empty log (the append bench left events behind), so
	// the log is exactly the generated one and can be checked.
	if err := e.reset(ctx); err != nil {
		return err
	}
	logf("%s: loading %d events with COPY", benchCatchUp, o.events)
	t0 := time.Now()
	gen, err := loadEvents(ctx, db, o.events)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	logf("%s: loaded %d events (%d lead.created, %d lead.updated, %d lead.status_changed) in %s",
		benchCatchUp, gen.pos, gen.created, gen.updated, gen.statusChanged, time.Since(t0).Round(time.Millisecond))
	// What autovacuum would have done on a live database by now; and a
	// checkpoint, so that writing back the load does not land inside a
	// timed run.
	t0 = time.Now()
	if err := e.exec(ctx, `VACUUM (ANALYZE) events`, `CHECKPOINT`); err != nil {
		return err
	}
	logf("%s: VACUUM ANALYZE + CHECKPOINT in %s", benchCatchUp, time.Since(t0).Round(time.Millisecond))

	// Like `salesos projections rebuild`: Rebuild, then CatchUp. Only a
	// checkpoint is added, so the previous run's dirty pages are not
	// written back during this one.
	return timeCatchUps(ctx, o, catchUpRun{
		name: benchCatchUp, backend: "postgres", write: db, read: db, drv: pgdriver.New(), store: store, gen: gen,
		settle: func() error { return e.exec(ctx, `CHECKPOINT`) },
		note:   "projections.CatchUp(leads) from position 0 to the head; ops are events",
	})
}

// catchUpRun is one database's catch-up measurement.
type catchUpRun struct {
	name, backend string
	write, read   *sqlx.DB
	drv           driver.Driver
	store         eventstore.Store
	gen           *logGen
	// settle runs after each rebuild, before the timed catch-up.
	settle func() error
	note   string
}

// timeCatchUps does, once per batch size, what `salesos projections
// rebuild` does, Rebuild then CatchUp of the leads projection from 0 to the
// head, times the catch-up, checks the table and emits the figure.
func timeCatchUps(ctx context.Context, o *options, c catchUpRun) error {
	head, err := c.store.Head(ctx)
	if err != nil {
		return err
	}
	for _, bs := range o.batchSizes {
		if err := projections.Rebuild(ctx, c.write, c.drv, projections.Leads{Driver: c.drv}); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		if err := c.settle(); err != nil {
			return err
		}
		logf("%s: CatchUp(leads, batch %d) over %d events", c.name, bs, head)
		var pos uint64
		var elapsed time.Duration
		err := o.profile(fmt.Sprintf("%s_%d", c.name, bs), func() error {
			start := time.Now()
			var err error
			pos, err = projections.CatchUp(ctx, c.write, c.drv, c.store, projections.Leads{Driver: c.drv}, bs)
			elapsed = time.Since(start)
			return err
		})
		if err != nil {
			return fmt.Errorf("catch-up: %w", err)
		}
		if pos != head {
			return fmt.Errorf("catch-up stopped at %d, head is %d", pos, head)
		}
		if err := checkLeads(ctx, c.read, c.gen); err != nil {
			return err
		}
		r := result{
			Bench: c.name, Backend: c.backend, BatchSize: bs, Events: int64(head),
			Ops: int64(head), Seconds: elapsed.Seconds(), OpsPerSec: float64(head) / elapsed.Seconds(),
			Note: c.note,
		}
		r.bar("ops_per_sec >= 30000", r.OpsPerSec >= 30000)
		emit(r)
	}
	return nil
}

// runCatchUpSQLite is runCatchUp on a fresh SQLite file: the same
// generated log, inserted straight into the events table, then Rebuild +
// CatchUp of the leads projection once per batch size.
func runCatchUpSQLite(ctx context.Context, o *options, t *target) error {
	name := t.name(benchCatchUp)
	db, store, err := t.openSQLite(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	defer store.Close()

	logf("%s: inserting %d events", name, o.events)
	t0 := time.Now()
	gen, err := insertEventsSQLite(ctx, db.Write, o.events)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	logf("%s: loaded %d events (%d lead.created, %d lead.updated, %d lead.status_changed) in %s",
		name, gen.pos, gen.created, gen.updated, gen.statusChanged, time.Since(t0).Round(time.Millisecond))
	if _, err := db.Write.ExecContext(ctx, `ANALYZE`); err != nil {
		return err
	}
	// After each rebuild, fold the write-ahead log back into the file, so
	// a run does not pay for the previous one's pages.
	return timeCatchUps(ctx, o, catchUpRun{
		name: name, backend: t.backend, write: db.Write, read: db.Read, drv: sqlitedriver.New(), store: store, gen: gen,
		settle: func() error {
			_, err := db.Write.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
			return err
		},
		note: "projections.CatchUp(leads) from position 0 to the head on a SQLite file (WAL, synchronous=FULL); ops are events",
	})
}

// insertEventsSQLite writes total generated events into the SQLite events
// table, 20,000 to a transaction.
func insertEventsSQLite(ctx context.Context, db *sqlx.DB, total int) (*logGen, error) {
	gen := newLogGen(total)
	for done := 0; done < total; {
		n := min(copyChunk, total-done)
		tx, err := db.BeginTxx(ctx, nil)
		if err != nil {
			return nil, err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO events (position, event_id, stream_id, version, type, data, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			tx.Rollback()
			return nil, err
		}
		for range n {
			r, err := gen.next()
			if err == nil {
				_, err = stmt.ExecContext(ctx, r.position, r.eventID.String(), r.stream, r.version, r.typ, string(r.data), string(r.meta))
			}
			if err != nil {
				stmt.Close()
				tx.Rollback()
				return nil, err
			}
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			return nil, err
		}
		done += n
	}
	if gen.pos != int64(total) {
		return nil, fmt.Errorf("generated %d events, want %d", gen.pos, total)
	}
	return gen, nil
}

// checkLeads compares the projected table with what the generator wrote:
// one row per created lead, and versions that add up to the event count.
func checkLeads(ctx context.Context, db *sqlx.DB, gen *logGen) error {
	var got struct {
		Rows     int64 `db:"rows"`
		Versions int64 `db:"versions"`
	}
	if err := db.GetContext(ctx, &got, `SELECT count(*) AS rows, COALESCE(sum(version), 0) AS versions FROM leads`); err != nil {
		return err
	}
	if got.Rows != gen.created || got.Versions != gen.pos {
		return fmt.Errorf("leads table is wrong after catch-up: %d rows with versions summing to %d, want %d and %d",
			got.Rows, got.Versions, gen.created, gen.pos)
	}
	return nil
}

// loadEvents writes total generated events with COPY, in chunks, while the
// next chunk is being generated.
func loadEvents(ctx context.Context, db *sqlx.DB, total int) (*logGen, error) {
	gen := newLogGen(total)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan [][]any, 2)
	var genErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(chunks)
		for done := 0; done < total; {
			n := min(copyChunk, total-done)
			rows := make([][]any, n)
			for i := range rows {
				r, err := gen.next()
				if err != nil {
					genErr = err
					return
				}
				rows[i] = []any{r.position, pgtype.UUID{Bytes: r.eventID, Valid: true}, r.stream, r.version, r.typ, r.data, r.meta}
			}
			select {
			case chunks <- rows:
			case <-ctx.Done():
				return
			}
			done += n
		}
	})
	err := copyChunks(ctx, db, chunks, total)
	cancel()
	wg.Wait()
	if err == nil {
		err = genErr
	}
	if err == nil && gen.pos != int64(total) {
		err = fmt.Errorf("generated %d events, want %d", gen.pos, total)
	}
	return gen, err
}

func copyChunks(ctx context.Context, db *sqlx.DB, chunks <-chan [][]any, total int) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	cols := []string{"position", "event_id", "stream_id", "version", "type", "data", "metadata"}
	copied, reported := 0, 0
	for rows := range chunks {
		err := conn.Raw(func(dc any) error {
			_, err := dc.(*stdlib.Conn).Conn().CopyFrom(ctx, pgx.Identifier{"events"}, cols, pgx.CopyFromRows(rows))
			return err
		})
		if err != nil {
			return err
		}
		copied += len(rows)
		if copied-reported >= total/10 || copied == total {
			logf("%s: loaded %d/%d", benchCatchUp, copied, total)
			reported = copied
		}
	}
	return ctx.Err()
}
