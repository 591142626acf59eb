package postgres_test

import (
	"context"
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
