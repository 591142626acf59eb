package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/eventstore/eventstoretest"
	"github.com/salesos/salesos/eventstore/sqlite"
	"github.com/salesos/salesos/migrations"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// holdWriteLock begins a transaction with begin (BEGIN IMMEDIATE or BEGIN
// EXCLUSIVE) on a connection of its own to db, which then holds SQLite's
// write lock as another process would. The caller closes the connection,
// and rolls back first when the lock is to be released early.
func holdWriteLock(t *testing.T, ctx context.Context, db *sqlite.DB, begin string) *sql.Conn {
	t.Helper()
	conn, err := db.Write.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, begin); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return conn
}

func ev() eventstore.EventData {
	return eventstore.EventData{ID: uuid.NewString(), Type: "a", Data: []byte(`{"k":1}`), Metadata: []byte(`{"org_id":"o1"}`)}
}

func TestConformance(t *testing.T) {
	eventstoretest.RunWith(t, func(t *testing.T) eventstore.Store {
		s, err := sqlite.Open(testCtx(t), filepath.Join(t.TempDir(), "salesos.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, eventstoretest.Options{NewPair: func(t *testing.T) (eventstore.Store, eventstore.Store) {
		// Two opens of one file: two processes, each with its own writer
		// connection, serialized by SQLite's write lock.
		path := filepath.Join(t.TempDir(), "salesos.db")
		a, err := sqlite.Open(testCtx(t), path, sqlite.Options{PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		b, err := sqlite.Open(testCtx(t), path, sqlite.Options{PollInterval: 20 * time.Millisecond})
		if err != nil {
			a.Close()
			t.Fatal(err)
		}
		return a, b
	}})
}

// The composition root's way: open the file, migrate it, build the store on
// the shared handles (which the store leaves open on Close).
func TestConformanceOnSharedHandles(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		ctx := testCtx(t)
		db, err := sqlite.OpenDB(ctx, filepath.Join(t.TempDir(), "salesos.db"), sqlite.DBOptions{Synchronous: "NORMAL"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if _, err := migrations.ApplySQLite(ctx, db.Write); err != nil {
			t.Fatal(err)
		}
		s, err := sqlite.New(ctx, db.Write, db.Read, sqlite.Options{MaxBatch: 3})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// Two stores on one file stand for two processes: a subscriber of one is
// woken by the other's appends through the poll (there is no cross-process
// signal), and each sees the other's events in one position order.
func TestTwoStoresOnOneFile(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "salesos.db")
	a, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlite.Open(ctx, path, sqlite.Options{PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	sub, err := b.Subscribe(ctx, 0, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := make(chan []eventstore.RecordedEvent, 1)
	errc := make(chan error, 1)
	go func() {
		evs, err := sub.Next(ctx)
		if err != nil {
			errc <- err
			return
		}
		got <- evs
	}()
	e := ev()
	ra, err := a.Append(ctx, "s-1", eventstore.NoStream, e)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case evs := <-got:
		if len(evs) != 1 || evs[0].ID != e.ID || evs[0].Position != ra.Position {
			t.Fatalf("b's subscriber got %+v, want a's event at %d", evs, ra.Position)
		}
	case err := <-errc:
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatal("b's subscriber never saw a's append")
	}

	// Both write; versions and positions stay consistent across them.
	if _, err := b.Append(ctx, "s-1", eventstore.NoStream, ev()); !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
		t.Fatalf("b appending to a's stream with NoStream: %v", err)
	}
	rb, err := b.Append(ctx, "s-1", 1, ev())
	if err != nil {
		t.Fatal(err)
	}
	if rb.Version != 2 || rb.Position <= ra.Position {
		t.Fatalf("b's append: %+v after a's %+v", rb, ra)
	}
	all, err := a.ReadAll(ctx, 0, 10)
	if err != nil || len(all) != 2 || all[1].Position != rb.Position {
		t.Fatalf("a reads %+v, %v", all, err)
	}
}

func TestEventIDsAreCanonicalAndUnique(t *testing.T) {
	ctx := testCtx(t)
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "salesos.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := uuid.New()
	e := ev()
	e.ID = strings.ToUpper(id.String())
	if _, err := s.Append(ctx, "s", eventstore.NoStream, e); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadStream(ctx, "s", 1, 1)
	if err != nil || got[0].ID != id.String() {
		t.Fatalf("id read back as %v (%v), want %s", got, err, id)
	}
	e.ID = id.String()
	if _, err := s.Append(ctx, "other", eventstore.Any, e); !errors.Is(err, eventstore.ErrInvalidAppend) {
		t.Fatalf("duplicate event id: %v, want ErrInvalidAppend", err)
	}
	e.ID = "not-a-uuid"
	if _, err := s.Append(ctx, "other", eventstore.Any, e); !errors.Is(err, eventstore.ErrInvalidAppend) {
		t.Fatalf("malformed event id: %v, want ErrInvalidAppend", err)
	}
	if got[0].RecordedAt.Location() != time.UTC || got[0].RecordedAt.Nanosecond()%1000 != 0 {
		t.Fatalf("recorded_at %v: want UTC, microseconds", got[0].RecordedAt)
	}
}

// A duplicate event id inside a group-committed batch fails only its own
// append: the others of the batch are retried alone and commit.
func TestBadAppendDoesNotFailItsBatch(t *testing.T) {
	ctx := testCtx(t)
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "salesos.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dup := ev()
	if _, err := s.Append(ctx, "first", eventstore.NoStream, dup); err != nil {
		t.Fatal(err)
	}
	const n = 50
	errs := make(chan error, n)
	for i := range n {
		go func() {
			e := ev()
			if i == n/2 {
				e = dup
			}
			_, err := s.Append(ctx, uuid.NewString(), eventstore.NoStream, e)
			errs <- err
		}()
	}
	bad := 0
	for range n {
		if err := <-errs; err != nil {
			if !errors.Is(err, eventstore.ErrInvalidAppend) {
				t.Fatal(err)
			}
			bad++
		}
	}
	if h, err := s.Head(ctx); bad != 1 || err != nil || h != n {
		t.Fatalf("%d appends failed, head %d (%v); want 1 and %d", bad, h, err, n)
	}
}

func TestUnwritableDirectory(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	// A data directory that cannot be created: its parent is a file. This
	// fails for root too.
	blocker := filepath.Join(dir, "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := sqlite.Open(ctx, filepath.Join(blocker, "data", "salesos.db"), sqlite.Options{})
	if !errors.Is(err, sqlite.ErrNotWritable) || !strings.Contains(err.Error(), "data directory") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v, want a one-line ErrNotWritable naming the data directory", err)
	}

	// A directory without write permission (root ignores permissions, so
	// this half only means something for other users).
	ro := filepath.Join(dir, "read-only")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(ro, 0o700) })
	_, err = sqlite.Open(ctx, filepath.Join(ro, "salesos.db"), sqlite.Options{})
	if os.Geteuid() != 0 {
		if !errors.Is(err, sqlite.ErrNotWritable) || !strings.Contains(err.Error(), "not writable") {
			t.Fatalf("err = %v, want ErrNotWritable", err)
		}
	} else if err != nil {
		t.Fatalf("root can write anywhere, yet: %v", err)
	}
}

func TestNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "salesos.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("this is not sqlite\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := sqlite.Open(testCtx(t), path, sqlite.Options{})
	if err == nil || !strings.Contains(err.Error(), "not a SQLite database") {
		t.Fatalf("err = %v, want 'not a SQLite database'", err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "salesos.db")
	db, err := sqlite.OpenDB(ctx, path, sqlite.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.ApplySQLite(ctx, db.Write); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Write.Exec(`INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = sqlite.Open(ctx, path, sqlite.Options{})
	if !errors.Is(err, migrations.ErrNewerSchema) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want ErrNewerSchema naming the file", err)
	}
}

// A lock held by another program past the busy timeout is ErrLocked, not a
// hang nor an obscure driver error.
func TestLockedDatabase(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "salesos.db")
	holder, err := sqlite.OpenDB(ctx, path, sqlite.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	conn := holdWriteLock(t, ctx, holder, `BEGIN EXCLUSIVE`)
	defer conn.Close()
	defer conn.ExecContext(context.Background(), `ROLLBACK`)
	_, err = sqlite.Open(ctx, path, sqlite.Options{DB: sqlite.DBOptions{BusyTimeout: 50 * time.Millisecond}})
	if !errors.Is(err, sqlite.ErrLocked) {
		t.Fatalf("err = %v, want ErrLocked", err)
	}
}

func TestParseURL(t *testing.T) {
	good := map[string]string{
		"sqlite://data/salesos.db":      "data/salesos.db",
		"sqlite:///var/lib/salesos.db":  "/var/lib/salesos.db",
		"SQLITE://./x.db":               "./x.db",
		"sqlite://dir with space/a.db":  "dir with space/a.db",
		"sqlite:///tmp/salesos-test.db": "/tmp/salesos-test.db",
	}
	for raw, want := range good {
		if got, err := sqlite.ParseURL(raw); err != nil || got != want {
			t.Errorf("ParseURL(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{"", "sqlite://", "postgres://x/y", "sqlite:x.db", "sqlite://x.db?_journal=DELETE", "sqlite://:memory:"} {
		if got, err := sqlite.ParseURL(raw); err == nil {
			t.Errorf("ParseURL(%q) = %q, want an error", raw, got)
		}
	}
}

// Paths that need escaping in a file: URI still name the file they say.
func TestPathWithSpecialCharacters(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "dir #1 ?%", "sales os.db")
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "s", eventstore.NoStream, ev()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at %s: %v", path, err)
	}
}

// COMMIT fails with an unknown outcome: the store looks the batch's event
// ids up through its read pool before it answers.
func TestAmbiguousCommit(t *testing.T) {
	t.Parallel()
	s, err := sqlite.Open(testCtx(t), filepath.Join(t.TempDir(), "salesos.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	eventstoretest.AmbiguousCommit(t, s, func(f func() (bool, error)) { sqlite.SetCommitFault(s, f) })
}

// Another process holding the write lock past the busy timeout makes
// appends fail as unavailable (the API answers 503), and the store writes
// again as soon as the lock is released.
func TestLockHeldElsewhereIsUnavailable(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "salesos.db")
	s, err := sqlite.Open(ctx, path, sqlite.Options{DB: sqlite.DBOptions{BusyTimeout: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	holder, err := sqlite.OpenDB(ctx, path, sqlite.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	conn := holdWriteLock(t, ctx, holder, `BEGIN IMMEDIATE`)
	defer conn.Close()
	_, err = s.Append(ctx, "s-locked", eventstore.NoStream, ev())
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append while another process holds the lock: %v, want ErrUnavailable", err)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "s-locked", eventstore.NoStream, ev()); err != nil {
		t.Fatalf("append after the lock was released: %v", err)
	}
}

// The query side reads and writes the SQLite file with its own handles: a
// busy error from there (not wrapped by the store) is an outage too.
func TestRawBusyErrorIsUnavailable(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "salesos.db")
	a, err := sqlite.OpenDB(ctx, path, sqlite.DBOptions{BusyTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlite.OpenDB(ctx, path, sqlite.DBOptions{BusyTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.Write.ExecContext(ctx, `CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	conn := holdWriteLock(t, ctx, a, `BEGIN IMMEDIATE`)
	defer conn.Close()
	defer conn.ExecContext(context.Background(), `ROLLBACK`)
	_, err = b.Write.ExecContext(ctx, `INSERT INTO t VALUES (1)`)
	if err == nil || !eventstore.IsUnavailable(err) {
		t.Fatalf("write while another connection holds the lock: %v, want an error IsUnavailable recognises", err)
	}
}

// Identical appends sharing one batch are one write and one answer.
func TestSameBatchReplay(t *testing.T) {
	t.Parallel()
	s, err := sqlite.Open(testCtx(t), filepath.Join(t.TempDir(), "salesos.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	eventstoretest.SameBatchReplay(t, s, func(f func() (bool, error)) { sqlite.SetCommitFault(s, f) }, func() int { return sqlite.QueuedAppends(s) })
}
