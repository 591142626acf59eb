package main

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/eventstore/esdb"
	"github.com/salesos/salesos/eventstore/esdbtest"
	"github.com/salesos/salesos/eventstore/postgres"
)

// quietLogger drops the store's and projections' logs during measurements.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// runAppend: concurrency goroutines, each appending one new lead.created
// event per call to a new stream (NoStream), for the duration.
func runAppend(ctx context.Context, o *options, e *env, refTPS float64) error {
	db, store, err := openPostgresStore(ctx, e.url)
	if err != nil {
		return err
	}
	defer db.Close()
	defer store.Close()
	if err := measureAppends(ctx, o, store, benchAppend, "postgres", refTPS,
		"events/s through eventstore/postgres.Store.Append, one lead.created per call to a new stream; latency per Append call"); err != nil {
		return err
	}
	var count int64
	if err := db.GetContext(ctx, &count, `SELECT count(*) FROM events`); err != nil {
		return err
	}
	logf("%s: events table holds %d rows", benchAppend, count)
	return nil
}

// runAppendSQLite: the same appends through the SQLite backend, on a fresh
// file with the defaults `salesos serve` uses (WAL, synchronous=FULL: every
// commit is fsynced before Append returns).
func runAppendSQLite(ctx context.Context, o *options, t *target, refTPS float64) error {
	db, store, err := t.openSQLite(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	defer store.Close()
	return measureAppends(ctx, o, store, t.name(benchAppend), t.backend, refTPS,
		"events/s through eventstore/sqlite.Store.Append (WAL, synchronous=FULL), one lead.created per call to a new stream; latency per Append call")
}

// runAppendESDB measures the EventStoreDB backend against the in-process
// test double (eventstore/esdbtest): no real EventStoreDB server can run
// here, so the figure is the client and backend overhead over loopback
// gRPC, not what a real server with its disk would do.
func runAppendESDB(ctx context.Context, o *options, refTPS float64) error {
	srv, err := esdbtest.Listen()
	if err != nil {
		return err
	}
	defer srv.Stop()
	store, err := esdb.New(ctx, srv.ConnString(), esdb.Options{Logger: quietLogger})
	if err != nil {
		return err
	}
	defer store.Close()
	return measureAppends(ctx, o, store, benchAppendESDB, "esdb (in-process test server)", refTPS,
		"events/s through eventstore/esdb.Store.Append against eventstore/esdbtest, the in-process EventStoreDB test double; not a real EventStoreDB")
}

func measureAppends(ctx context.Context, o *options, store eventstore.Store, name, backend string, refTPS float64, note string) error {
	var n atomic.Int64
	op := func(ctx context.Context, _ int) (bool, error) {
		id := newLeadID()
		d, err := leadCreated(id, "org_bench", int(n.Add(1)), time.Now())
		if err != nil {
			return false, err
		}
		_, err = store.Append(ctx, envelope.LeadStream(id), eventstore.NoStream, d)
		return err == nil, err
	}
	// Warm up the pool and the writer.
	runLoad(ctx, o.concurrency, 500*time.Millisecond, op)

	logf("%s: %d goroutines for %s", name, o.concurrency, o.duration)
	var res *loadResult
	if err := o.profile(name, func() error {
		res = runLoad(ctx, o.concurrency, o.duration, op)
		return nil
	}); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if res.firstErr != nil {
		logf("%s: %d failed appends, first: %v", name, res.failed, res.firstErr)
	}
	r := result{
		Bench: name, Backend: backend, Concurrency: o.concurrency,
		Ops: res.ok, Errors: res.failed, Seconds: res.elapsed.Seconds(), OpsPerSec: res.opsPerSec(),
		Note: note,
	}
	r.setLatencies(&res.lat)
	r.against(benchPgbench, refTPS)
	if refTPS > 0 && name == benchAppend {
		r.bar("ratio >= 0.5", r.Ratio >= 0.5)
	}
	emit(r)
	return nil
}

// openPostgresStore opens the bench database and its event store. Close the
// store, then the database.
func openPostgresStore(ctx context.Context, url string) (*sqlx.DB, *postgres.Store, error) {
	db, err := app.OpenDB(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	store, err := postgres.New(ctx, db, postgres.Options{Logger: quietLogger})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, store, nil
}
