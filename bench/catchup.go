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

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/eventstore/postgres"
	"github.com/salesos/salesos/projections"
)

// copyChunk is how many rows one COPY carries.
const copyChunk = 20_000

// runCatchUp loads o.events lead events straight into the events table,
// then times projections.CatchUp of the leads projection from position 0 to
// the head, once per batch size (with a rebuild in between).
func runCatchUp(ctx context.Context, o *options, e *env) error {
	db, err := app.OpenDB(ctx, e.url)
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := postgres.New(ctx, db, postgres.Options{Logger: quietLogger})
	if err != nil {
		return err
	}
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

	head, err := store.Head(ctx)
	if err != nil {
		return err
	}
	for _, bs := range o.batchSizes {
		if err := projections.Rebuild(ctx, db, projections.Leads{}); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		// Like `salesos projections rebuild`: Rebuild, then CatchUp. Only
		// a checkpoint is added, so the previous run's dirty pages are not
		// written back during this one.
		if err := e.exec(ctx, `CHECKPOINT`); err != nil {
			return err
		}
		logf("%s: CatchUp(leads, batch %d) over %d events", benchCatchUp, bs, head)
		var pos uint64
		var elapsed time.Duration
		err := o.profile(fmt.Sprintf("%s_%d", benchCatchUp, bs), func() error {
			start := time.Now()
			var err error
			pos, err = projections.CatchUp(ctx, db, store, projections.Leads{}, bs)
			elapsed = time.Since(start)
			return err
		})
		if err != nil {
			return fmt.Errorf("catch-up: %w", err)
		}
		if pos != head {
			return fmt.Errorf("catch-up stopped at %d, head is %d", pos, head)
		}
		if err := checkLeads(ctx, db, gen); err != nil {
			return err
		}
		r := result{
			Bench: benchCatchUp, Backend: "postgres", BatchSize: bs, Events: int64(head),
			Ops: int64(head), Seconds: elapsed.Seconds(), OpsPerSec: float64(head) / elapsed.Seconds(),
			Note: "projections.CatchUp(leads) from position 0 to the head; ops are events",
		}
		r.bar("ops_per_sec >= 30000", r.OpsPerSec >= 30000)
		emit(r)
	}
	return nil
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
