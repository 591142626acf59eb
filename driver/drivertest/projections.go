package drivertest

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/internal/testdb"
)

func init() { areas = append(areas, area{"Projections", runProjections}) }

func runProjections(t *testing.T, d driver.Driver, open Open) {
	t.Run("ReadCheckpointOfNone", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		cp, err := d.ReadCheckpoint(ctx(t), s.DB, "p")
		if err != nil || cp != (driver.Checkpoint{}) {
			t.Fatalf("ReadCheckpoint of a projection with none = %+v, %v; want the zero checkpoint", cp, err)
		}
	})
	t.Run("LockAdvanceRestartCheckpoint", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		inTx(t, s, func(tx *sqlx.Tx) {
			cp, err := d.LockCheckpoint(ctx(t), tx, "p")
			if err != nil || cp != (driver.Checkpoint{}) {
				t.Fatalf("LockCheckpoint creating the row = %+v, %v", cp, err)
			}
			if err := d.AdvanceCheckpoint(ctx(t), tx, "p", 42, now()); err != nil {
				t.Fatal(err)
			}
			// Locking again in the same transaction sees the advance.
			if cp, err := d.LockCheckpoint(ctx(t), tx, "p"); err != nil || cp.Position != 42 {
				t.Fatalf("LockCheckpoint after AdvanceCheckpoint = %+v, %v", cp, err)
			}
		})
		if cp, err := d.ReadCheckpoint(ctx(t), s.DB, "p"); err != nil || cp != (driver.Checkpoint{Position: 42}) {
			t.Fatalf("ReadCheckpoint after commit = %+v, %v", cp, err)
		}
		inTx(t, s, func(tx *sqlx.Tx) {
			if _, err := d.LockCheckpoint(ctx(t), tx, "p"); err != nil {
				t.Fatal(err)
			}
			if err := d.RestartCheckpoint(ctx(t), tx, "p", now()); err != nil {
				t.Fatal(err)
			}
		})
		if cp, err := d.ReadCheckpoint(ctx(t), s.DB, "p"); err != nil || cp != (driver.Checkpoint{Generation: 1}) {
			t.Fatalf("ReadCheckpoint after RestartCheckpoint = %+v, %v; want position 0 of generation 1", cp, err)
		}
		if cp, err := d.ReadCheckpoint(ctx(t), s.DB, "other"); err != nil || cp != (driver.Checkpoint{}) {
			t.Fatalf("another projection's checkpoint = %+v, %v", cp, err)
		}
	})
	t.Run("LeaderLock", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		conn, held, err := d.TryLeaderLock(ctx(t), s.DB, "p")
		if err != nil || !held {
			t.Fatalf("TryLeaderLock of a free lock = %v, %v", held, err)
		}
		if conn != nil {
			// A lock on a connection excludes every other taker until it
			// is released; other projections' locks are independent.
			if c2, held2, err := d.TryLeaderLock(ctx(t), s.DB, "p"); err != nil || held2 || c2 != nil {
				t.Fatalf("TryLeaderLock of a held lock = %v, %v, %v", c2, held2, err)
			}
			other, held3, err := d.TryLeaderLock(ctx(t), s.DB, "q")
			if err != nil || !held3 {
				t.Fatalf("TryLeaderLock of another projection = %v, %v", held3, err)
			}
			if err := d.ReleaseLeaderLock(ctx(t), other, "q"); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.ReleaseLeaderLock(ctx(t), conn, "p"); err != nil {
			t.Fatal(err)
		}
		again, held, err := d.TryLeaderLock(ctx(t), s.DB, "p")
		if err != nil || !held {
			t.Fatalf("TryLeaderLock after ReleaseLeaderLock = %v, %v", held, err)
		}
		if err := d.ReleaseLeaderLock(ctx(t), again, "p"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("EmptyReadModel", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		upsertLeads(t, d, s, driver.LeadWrite{After: lead("l1", "org", 1, 1)})
		inTx(t, s, func(tx *sqlx.Tx) {
			if err := d.BeginProjectionBatch(ctx(t), tx); err != nil {
				t.Fatal(err)
			}
			if err := d.EmptyReadModel(ctx(t), tx, "leads"); err != nil {
				t.Fatal(err)
			}
		})
		if rows, err := d.LoadLeads(ctx(t), s.DB, []string{"l1"}); err != nil || len(rows) != 0 {
			t.Fatalf("leads after EmptyReadModel: %+v, %v", rows, err)
		}
	})
	t.Run("Attempts", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		inTx(t, s, func(tx *sqlx.Tx) {
			if err := d.BeginAttempt(ctx(t), tx); err != nil {
				t.Fatal(err)
			}
			if err := d.UpsertLeads(ctx(t), tx, []driver.LeadWrite{{After: lead("undone", "org", 1, 1)}}); err != nil {
				t.Fatal(err)
			}
			if err := d.UndoAttempt(ctx(t), tx); err != nil {
				t.Fatalf("UndoAttempt: %v", err)
			}
			if err := d.BeginAttempt(ctx(t), tx); err != nil {
				t.Fatal(err)
			}
			if err := d.UpsertLeads(ctx(t), tx, []driver.LeadWrite{{After: lead("kept", "org", 1, 1)}}); err != nil {
				t.Fatal(err)
			}
			if err := d.KeepAttempt(ctx(t), tx); err != nil {
				t.Fatalf("KeepAttempt: %v", err)
			}
		})
		rows, err := d.LoadLeads(ctx(t), s.DB, []string{"undone", "kept"})
		if err != nil || len(rows) != 1 || rows[0].ID != "kept" {
			t.Fatalf("after an undone and a kept attempt: %+v, %v; want only kept", rows, err)
		}
	})
	runLeadRows(t, d, open)
	runDealRows(t, d, open)
	runParked(t, d, open)
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// now is a time both databases store exactly (microseconds, UTC).
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// inTx runs fn in a transaction on the write handle and commits it.
func inTx(t testing.TB, s *testdb.Schema, fn func(tx *sqlx.Tx)) {
	t.Helper()
	tx, err := s.DB.BeginTxx(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	fn(tx)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func upsertLeads(t testing.TB, d driver.Driver, s *testdb.Schema, ws ...driver.LeadWrite) {
	t.Helper()
	inTx(t, s, func(tx *sqlx.Tx) {
		if err := d.UpsertLeads(ctx(t), tx, ws); err != nil {
			t.Fatal(err)
		}
	})
}

func getLead(t testing.TB, d driver.Driver, s *testdb.Schema, id string) driver.LeadRow {
	t.Helper()
	r, err := d.GetLead(ctx(t), s.DB, id)
	if err != nil {
		t.Fatalf("GetLead %s: %v", id, err)
	}
	return r
}

func ptr[T any](v T) *T { return &v }

// base is the creation time of the rows the tests make; created is the
// n-th second after it.
var base = time.Date(2026, 3, 1, 9, 0, 0, 123456000, time.UTC)

func created(n int) time.Time { return base.Add(time.Duration(n) * time.Second) }

func lead(id, org string, version int64, createdN int) driver.LeadRow {
	return driver.LeadRow{
		ID: id, OrgID: org, Name: "Lead " + id, Status: "new", CustomFields: driver.JSONDoc(`{}`),
		CreatedAt: created(createdN), UpdatedAt: created(createdN), Version: version,
	}
}

// compactJSON is a JSON document with its insignificant spaces removed
// (PostgreSQL's jsonb adds some).
func compactJSON(doc []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, doc); err != nil {
		return "invalid JSON " + string(doc)
	}
	return b.String()
}

// sameLead compares rows as stored: times by instant, JSON documents
// without their spacing.
func sameLead(a, b driver.LeadRow) bool {
	norm := func(r driver.LeadRow) driver.LeadRow {
		r.CustomFields = driver.JSONDoc(compactJSON(r.CustomFields))
		r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
		if r.DeletedAt != nil {
			r.DeletedAt = ptr(r.DeletedAt.UTC())
		}
		return r
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func runLeadRows(t *testing.T, d driver.Driver, open Open) {
	t.Run("UpsertLeadsVersionGuard", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		v2 := lead("l1", "org", 2, 1)
		v2.Email, v2.CustomFields = ptr("ada@example.com"), driver.JSONDoc(`{"tier":"gold"}`)
		upsertLeads(t, d, s, driver.LeadWrite{After: v2})
		if got := getLead(t, d, s, "l1"); !sameLead(got, v2) {
			t.Fatalf("after the first upsert:\n got  %+v\n want %+v", got, v2)
		}
		// An older version, as a replay would write it, changes nothing.
		v1 := lead("l1", "org", 1, 1)
		v1.Name = "stale"
		upsertLeads(t, d, s, driver.LeadWrite{After: v1})
		// The same version, loaded and unchanged, changes nothing either.
		same := v2
		same.Name = "same version"
		upsertLeads(t, d, s, driver.LeadWrite{Before: &v2, After: same})
		if got := getLead(t, d, s, "l1"); !sameLead(got, v2) {
			t.Fatalf("an older or equal version overwrote the row:\n got  %+v\n want %+v", got, v2)
		}
		// A newer version, loaded first, replaces the columns it changes.
		v3 := v2
		v3.Version, v3.Title, v3.Email, v3.OwnerID = 3, ptr("CTO"), nil, ptr("u1")
		v3.DeletedAt = ptr(created(9))
		upsertLeads(t, d, s, driver.LeadWrite{Before: &v2, After: v3})
		if got := getLead(t, d, s, "l1"); !sameLead(got, v3) {
			t.Fatalf("a newer version was not stored:\n got  %+v\n want %+v", got, v3)
		}
		// A newer version written without its stored row (a replay that
		// did not load it) replaces the whole row.
		v4 := lead("l1", "org", 4, 1)
		upsertLeads(t, d, s, driver.LeadWrite{After: v4})
		if got := getLead(t, d, s, "l1"); !sameLead(got, v4) {
			t.Fatalf("a newer version without Before was not stored:\n got  %+v\n want %+v", got, v4)
		}
		// A row encoded ahead (EncodeLead) is stored as the row itself.
		v5 := lead("l1", "org", 5, 1)
		v5.Source = ptr("import")
		upsertLeads(t, d, s, driver.LeadWrite{After: v5, Encoded: d.EncodeLead(&v5)})
		if got := getLead(t, d, s, "l1"); !sameLead(got, v5) {
			t.Fatalf("a row encoded ahead was not stored as itself:\n got  %+v\n want %+v", got, v5)
		}
	})
	t.Run("LoadAndGetLeads", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		upsertLeads(t, d, s, driver.LeadWrite{After: lead("a", "org", 1, 1)}, driver.LeadWrite{After: lead("b", "other", 1, 2)})
		inTx(t, s, func(tx *sqlx.Tx) {
			rows, err := d.LoadLeads(ctx(t), tx, []string{"b", "missing", "a"})
			if err != nil || len(rows) != 2 {
				t.Fatalf("LoadLeads: %+v, %v; want a and b", rows, err)
			}
		})
		if rows, err := d.LoadLeads(ctx(t), s.DB, nil); err != nil || len(rows) != 0 {
			t.Fatalf("LoadLeads of no ids: %+v, %v", rows, err)
		}
		if _, err := d.GetLead(ctx(t), s.DB, "missing"); !errors.Is(err, sql.ErrNoRows) {
			t.Fatalf("GetLead of a missing lead: %v; want sql.ErrNoRows", err)
		}
		if r := getLead(t, d, s, "b"); r.OrgID != "other" {
			t.Fatalf("GetLead returns any organization's row: %+v", r)
		}
	})
	t.Run("ListLeads", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mk := func(id string, n int, edit func(*driver.LeadRow)) driver.LeadWrite {
			r := lead(id, "org", 1, n)
			if edit != nil {
				edit(&r)
			}
			return driver.LeadWrite{After: r}
		}
		upsertLeads(t, d, s,
			mk("l1", 1, func(r *driver.LeadRow) { r.Company = ptr("École Polytechnique") }),
			mk("l2", 2, func(r *driver.LeadRow) { r.Status, r.OwnerID, r.Company = "contacted", ptr("u1"), ptr("A0B") }),
			mk("l3", 3, func(r *driver.LeadRow) { r.Email = ptr("ADA@EXAMPLE.COM") }),
			mk("l4", 3, func(r *driver.LeadRow) { r.Name = "50% off" }), // same created_at as l3: id breaks the tie
			mk("l5", 4, func(r *driver.LeadRow) { r.DeletedAt = ptr(created(5)) }),
			mk("x1", 5, func(r *driver.LeadRow) { r.OrgID = "other" }),
		)
		ids := func(rows []driver.LeadRow) []string {
			out := []string{}
			for _, r := range rows {
				out = append(out, r.ID)
			}
			return out
		}
		cases := []struct {
			name string
			l    driver.LeadList
			want []string
		}{
			{"all live leads of the organization, newest first", driver.LeadList{}, []string{"l4", "l3", "l2", "l1"}},
			{"limit", driver.LeadList{Limit: 2}, []string{"l4", "l3"}},
			{"after a cursor", driver.LeadList{After: &driver.Keyset{CreatedAt: created(3), ID: "l4"}}, []string{"l3", "l2", "l1"}},
			{"status", driver.LeadList{Status: "contacted"}, []string{"l2"}},
			{"owner", driver.LeadList{OwnerID: "u1"}, []string{"l2"}},
			{"created after", driver.LeadList{CreatedAfter: ptr(created(2))}, []string{"l4", "l3"}},
			{"search ignores case (ASCII)", driver.LeadList{Q: "ada@example"}, []string{"l3"}},
			{"search ignores case (beyond ASCII)", driver.LeadList{Q: "éCOLE"}, []string{"l1"}},
			{"search takes % literally", driver.LeadList{Q: "0%"}, []string{"l4"}},
			{"search takes _ literally", driver.LeadList{Q: "_"}, []string{}},
		}
		for _, c := range cases {
			c.l.OrgID = "org"
			if c.l.Limit == 0 {
				c.l.Limit = 10
			}
			rows, err := d.ListLeads(ctx(t), s.Read, c.l)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if got := ids(rows); !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s: got %v, want %v", c.name, got, c.want)
			}
		}
	})
}
