package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/eventstore/eventstoretest"
	"github.com/salesos/salesos/eventstore/postgres"
	"github.com/salesos/salesos/internal/testdb"
)

func TestConformance(t *testing.T) {
	eventstoretest.RunWith(t, func(t *testing.T) eventstore.Store {
		db := testdb.NewPostgres(t)
		s, err := postgres.New(context.Background(), db.DB, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, eventstoretest.Options{NewPair: func(t *testing.T) (eventstore.Store, eventstore.Store) {
		// Two pools on one schema: two processes, each with its own
		// writer, racing for the advisory lock.
		schema := testdb.NewPostgres(t)
		other, err := sqlx.Open("pgx", schema.URL)
		if err != nil {
			t.Fatal(err)
		}
		other.SetMaxOpenConns(4)
		t.Cleanup(func() { other.Close() })
		a, err := postgres.New(context.Background(), schema.DB, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := postgres.New(context.Background(), other, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}})
}

// A subscriber in one process is woken by an append made through another
// store on the same database (LISTEN/NOTIFY), not by its poll: the poll is
// set to an hour here.
func TestWakeUpAcrossProcesses(t *testing.T) {
	db := testdb.NewPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	writer, err := postgres.New(ctx, db.DB, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	other, err := sqlx.Open("pgx", db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	reader, err := postgres.New(ctx, other, postgres.Options{PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	sub, err := reader.Subscribe(ctx, 0, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := sub.Next(ctx)
		got <- err
	}()
	// The LISTEN may not be established yet when the first append lands;
	// keep appending until the reader wakes (each append notifies again).
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := writer.Append(ctx, "s-"+uuid.NewString(), eventstore.NoStream,
			eventstore.EventData{ID: uuid.NewString(), Type: "a", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
			return
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("reader was never woken by NOTIFY")
		}
	}
}

// Appends after Close fail at once; none may hang on a writer that is gone.
func TestAppendAfterCloseFails(t *testing.T) {
	db := testdb.NewPostgres(t)
	s, err := postgres.New(context.Background(), db.DB, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 100 {
		_, err := s.Append(ctx, "s-"+uuid.NewString(), eventstore.NoStream,
			eventstore.EventData{ID: uuid.NewString(), Type: "a", Data: []byte(`{}`)})
		if err == nil || ctx.Err() != nil {
			t.Fatalf("append after close: err %v, ctx %v", err, ctx.Err())
		}
	}
}

// The connection is lost around COMMIT: the store looks the batch's event
// ids up on another connection before it answers.
func TestAmbiguousCommit(t *testing.T) {
	t.Parallel()
	db := testdb.NewPostgres(t)
	s, err := postgres.New(context.Background(), db.DB, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	eventstoretest.AmbiguousCommit(t, s, func(f func() (bool, error)) { postgres.SetCommitFault(s, f) })
}

// The server ends the store's connections (pg_terminate_backend, what a
// restart does to them: "terminating connection", SQLSTATE 57P01). Appends
// meanwhile fail as unavailable or succeed, never with another error, and
// the store writes again by itself. Only this test's own connections are
// terminated (found by their application_name).
func TestTerminatedConnectionsAreUnavailableThenRecover(t *testing.T) {
	t.Parallel()
	schema := testdb.NewPostgres(t)
	appName := "salesos_test_" + schema.Name
	db, err := sqlx.Open("pgx", schema.URL+"&application_name="+appName)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := postgres.New(ctx, db, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev := func() eventstore.EventData {
		return eventstore.EventData{ID: uuid.NewString(), Type: "a", Data: []byte(`{}`)}
	}
	stream := "s-" + uuid.NewString()
	if _, err := s.Append(ctx, stream, eventstore.NoStream, ev()); err != nil {
		t.Fatal(err)
	}
	version := int64(1)
	for round := range 3 {
		var n int
		if err := schema.DB.GetContext(ctx, &n, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, appName); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("round %d: no connection of the store to terminate", round)
		}
		recovered := false
		for attempt := 0; attempt < 50 && !recovered; attempt++ {
			r, err := s.Append(ctx, stream, version, ev())
			switch {
			case err == nil:
				version = r.Version
				recovered = true
			case errors.Is(err, eventstore.ErrUnavailable):
			default:
				t.Fatalf("round %d: append after the connections were terminated: %v, want success or ErrUnavailable", round, err)
			}
		}
		if !recovered {
			t.Fatalf("round %d: the store did not write again", round)
		}
	}
	all, err := eventstore.ReadFullStream(ctx, s, stream)
	if err != nil || int64(len(all)) != version {
		t.Fatalf("stream has %d events (%v), want %d", len(all), err, version)
	}
}

// Identical appends sharing one batch are one write and one answer.
func TestSameBatchReplay(t *testing.T) {
	t.Parallel()
	db := testdb.NewPostgres(t)
	s, err := postgres.New(context.Background(), db.DB, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	eventstoretest.SameBatchReplay(t, s, func(f func() (bool, error)) { postgres.SetCommitFault(s, f) }, func() int { return postgres.QueuedAppends(s) })
}
