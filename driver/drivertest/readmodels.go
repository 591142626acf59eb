package drivertest

import (
	"reflect"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/internal/testdb"
)

func deal(id, org string, version int64, createdN int) driver.DealRow {
	return driver.DealRow{
		ID: id, OrgID: org, Name: "Deal " + id, Stage: "qualification", CustomFields: driver.JSONDoc(`{}`),
		CreatedAt: created(createdN), UpdatedAt: created(createdN), Version: version,
	}
}

func upsertDeals(t testing.TB, d driver.Driver, s *testdb.Schema, ws ...driver.DealWrite) {
	t.Helper()
	inTx(t, s, func(tx *sqlx.Tx) {
		if err := d.UpsertDeals(ctx(t), tx, ws); err != nil {
			t.Fatal(err)
		}
	})
}

func getDeal(t testing.TB, d driver.Driver, s *testdb.Schema, id string) driver.DealRow {
	t.Helper()
	r, err := d.GetDeal(ctx(t), s.DB, id)
	if err != nil {
		t.Fatalf("GetDeal %s: %v", id, err)
	}
	return r
}

func sameDeal(a, b driver.DealRow) bool {
	norm := func(r driver.DealRow) driver.DealRow {
		r.CustomFields = driver.JSONDoc(compactJSON(r.CustomFields))
		r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
		if r.ClosedAt != nil {
			r.ClosedAt = ptr(r.ClosedAt.UTC())
		}
		if r.DeletedAt != nil {
			r.DeletedAt = ptr(r.DeletedAt.UTC())
		}
		return r
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func runDealRows(t *testing.T, d driver.Driver, open Open) {
	t.Run("UpsertDealsVersionGuard", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		// The amount and the date come back exactly as written.
		v2 := deal("d1", "org", 2, 1)
		v2.Amount, v2.Currency, v2.ExpectedCloseDate = ptr("12345678901234567.25"), ptr("EUR"), ptr("2026-07-31")
		v2.LeadID = ptr("l1")
		upsertDeals(t, d, s, driver.DealWrite{After: v2})
		if got := getDeal(t, d, s, "d1"); !sameDeal(got, v2) {
			t.Fatalf("after the first upsert:\n got  %+v\n want %+v", got, v2)
		}
		v1 := deal("d1", "org", 1, 1)
		upsertDeals(t, d, s, driver.DealWrite{After: v1})
		if got := getDeal(t, d, s, "d1"); !sameDeal(got, v2) {
			t.Fatalf("an older version overwrote the row:\n got  %+v\n want %+v", got, v2)
		}
		v3 := v2
		v3.Version, v3.Stage, v3.LostReason, v3.ClosedAt, v3.Amount = 3, "lost", ptr("budget"), ptr(created(7)), nil
		upsertDeals(t, d, s, driver.DealWrite{Before: &v2, After: v3})
		if got := getDeal(t, d, s, "d1"); !sameDeal(got, v3) {
			t.Fatalf("a newer version was not stored:\n got  %+v\n want %+v", got, v3)
		}
		inTx(t, s, func(tx *sqlx.Tx) {
			rows, err := d.LoadDeals(ctx(t), tx, []string{"d1", "missing"})
			if err != nil || len(rows) != 1 || !sameDeal(rows[0], v3) {
				t.Fatalf("LoadDeals: %+v, %v", rows, err)
			}
		})
	})
	t.Run("ListDeals", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mk := func(id string, n int, edit func(*driver.DealRow)) driver.DealWrite {
			r := deal(id, "org", 1, n)
			if edit != nil {
				edit(&r)
			}
			return driver.DealWrite{After: r}
		}
		upsertDeals(t, d, s,
			mk("d1", 1, func(r *driver.DealRow) { r.Name, r.LeadID = "Große Lieferung", ptr("l1") }),
			mk("d2", 2, func(r *driver.DealRow) { r.Name, r.Stage, r.OwnerID = "ÉCLAIR", "won", ptr("u1") }),
			mk("d3", 3, func(r *driver.DealRow) { r.DeletedAt = ptr(created(4)) }),
			mk("x1", 4, func(r *driver.DealRow) { r.OrgID = "other" }),
		)
		cases := []struct {
			name string
			l    driver.DealList
			want []string
		}{
			{"all live deals of the organization, newest first", driver.DealList{}, []string{"d2", "d1"}},
			{"after a cursor", driver.DealList{After: &driver.Keyset{CreatedAt: created(2), ID: "d2"}}, []string{"d1"}},
			{"limit", driver.DealList{Limit: 1}, []string{"d2"}},
			{"stage", driver.DealList{Stage: "won"}, []string{"d2"}},
			{"owner", driver.DealList{OwnerID: "u1"}, []string{"d2"}},
			{"lead", driver.DealList{LeadID: "l1"}, []string{"d1"}},
			{"created after", driver.DealList{CreatedAfter: ptr(created(1))}, []string{"d2"}},
			{"search ignores case", driver.DealList{Q: "LIEFERUNG"}, []string{"d1"}},
			{"search ignores case beyond ASCII", driver.DealList{Q: "éCLAIR"}, []string{"d2"}},
			{"search misses", driver.DealList{Q: "nothing"}, []string{}},
		}
		for _, c := range cases {
			c.l.OrgID = "org"
			if c.l.Limit == 0 {
				c.l.Limit = 10
			}
			rows, err := d.ListDeals(ctx(t), s.Read, c.l)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			got := []string{}
			for _, r := range rows {
				got = append(got, r.ID)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s: got %v, want %v", c.name, got, c.want)
			}
		}
	})
}
