package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/driver/sqlitedriver"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore/sqlite"
	"github.com/salesos/salesos/migrations"
)

// BenchmarkCatchUpSQLite times projections.CatchUp of the leads projection
// over a generated log in a temporary SQLite file, from position 0 to the
// head, per batch size (a Rebuild in between), and reports events/s. The
// log size is SALESOS_BENCH_EVENTS (default 100000); the acceptance run is
//
//	SALESOS_BENCH_EVENTS=1000000 go test -run '^$' -bench CatchUpSQLite -benchtime 1x ./projections/
//
// The log mimics bench/leads.go: about 80% lead.created, the rest
// lead.updated and lead.status_changed on earlier leads picked at random,
// so most batches must load rows they update.
func BenchmarkCatchUpSQLite(b *testing.B) {
	total := 100_000
	if s := os.Getenv("SALESOS_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("SALESOS_BENCH_EVENTS=%q", s)
		}
		total = n
	}
	ctx := context.Background()
	db, err := sqlite.OpenDB(ctx, filepath.Join(b.TempDir(), "bench.db"), sqlite.DBOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.ApplySQLite(ctx, db.Write); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	created, err := loadLeadLog(ctx, db, total)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d events (%d leads) in %s", total, created, time.Since(t0).Round(time.Millisecond))
	store, err := sqlite.New(ctx, db.Write, db.Read, sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()

	for _, bs := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("batch=%d", bs), func(b *testing.B) {
			var elapsed time.Duration
			for range b.N {
				if err := Rebuild(ctx, db.Write, sqlitedriver.New(), Leads{Driver: sqlitedriver.New()}); err != nil {
					b.Fatal(err)
				}
				if _, err := db.Write.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				pos, err := CatchUp(ctx, db.Write, sqlitedriver.New(), store, Leads{Driver: sqlitedriver.New()}, bs)
				elapsed += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if pos != uint64(total) {
					b.Fatalf("caught up to %d of %d", pos, total)
				}
			}
			var got struct {
				Rows     int64 `db:"rows"`
				Versions int64 `db:"versions"`
			}
			if err := db.Read.GetContext(ctx, &got, `SELECT count(*) AS rows, COALESCE(sum(version), 0) AS versions FROM leads`); err != nil {
				b.Fatal(err)
			}
			if got.Rows != created || got.Versions != int64(total) {
				b.Fatalf("leads: %d rows, versions summing to %d; want %d and %d", got.Rows, got.Versions, created, total)
			}
			rate := float64(total) * float64(b.N) / elapsed.Seconds()
			b.ReportMetric(rate, "events/s")
			b.Logf("batch %d: %d events in %s: %.0f events/s", bs, total, (elapsed / time.Duration(b.N)).Round(time.Millisecond), rate)
		})
	}
}

// loadLeadLog writes total generated lead events straight into the events
// table, in one transaction, and returns how many leads it created.
func loadLeadLog(ctx context.Context, db *sqlite.DB, total int) (int64, error) {
	tx, err := db.Write.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, `INSERT INTO events (position, event_id, stream_id, version, type, data, metadata, recorded_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	var (
		rng      = rand.New(rand.NewPCG(1, 2))
		orgs     = make([]string, 20)
		statuses = []domain.LeadStatus{domain.LeadStatusNew, domain.LeadStatusContacted, domain.LeadStatusQualified, domain.LeadStatusUnqualified}
		ids      []string
		versions []int64
		status   []int
		org      []int
		at       = time.Now().Add(-time.Duration(total) * time.Millisecond).UTC().Truncate(time.Microsecond)
	)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org_bench_%02d", i)
	}
	for pos := 1; pos <= total; pos++ {
		at = at.Add(time.Millisecond)
		var ev domain.Event
		var i int
		if len(ids) == 0 || rng.IntN(5) != 0 {
			n := len(ids)
			o := rng.IntN(len(orgs))
			id := "lead_" + strings.ReplaceAll(uuid.Must(uuid.NewV7()).String(), "-", "")
			evs, err := domain.CreateLead(id, orgs[o], domain.LeadInput{
				Name:    fmt.Sprintf("Lead %d", n),
				Email:   ptr(fmt.Sprintf("lead.%d@example.com", n)),
				Phone:   ptr(fmt.Sprintf("+1 415 555 %04d", n%10000)),
				Company: ptr(fmt.Sprintf("Company %d", n%97)),
				Title:   ptr("VP Sales"),
				Source:  ptr("web"),
				OwnerID: ptr(fmt.Sprintf("user_%03d", n%200)),
				CustomFields: map[string]json.RawMessage{
					"industry":  json.RawMessage(`"software"`),
					"employees": json.RawMessage(strconv.Itoa(50 + n%5000)),
				},
			})
			if err != nil {
				return 0, err
			}
			ev, i = evs[0], n
			ids, versions, status, org = append(ids, id), append(versions, 0), append(status, 0), append(org, o)
		} else {
			i = rng.IntN(len(ids))
			if rng.IntN(2) == 0 {
				ev = domain.LeadUpdated{Title: domain.OptOf("CTO"), Phone: domain.OptOf(fmt.Sprintf("+1 415 555 %04d", rng.IntN(10000)))}
			} else {
				to := (status[i] + 1 + rng.IntN(len(statuses)-1)) % len(statuses)
				ev = domain.LeadStatusChanged{From: statuses[status[i]], To: statuses[to]}
				status[i] = to
			}
		}
		versions[i]++
		m := domain.Metadata{
			EventID: uuid.Must(uuid.NewV7()).String(), OccurredAt: at, OrgID: orgs[org[i]],
			Actor: domain.Actor{Sub: "auth0|bench", Type: domain.ActorUser}, RequestID: "req_bench", CorrelationID: "req_bench",
		}
		d, err := envelope.Encode(ev, m)
		if err != nil {
			return 0, err
		}
		if _, err := st.ExecContext(ctx, pos, d.ID, envelope.LeadStream(ids[i]), versions[i], d.Type, string(d.Data), string(d.Metadata),
			at.Format("2006-01-02T15:04:05.000000Z")); err != nil {
			return 0, err
		}
	}
	return int64(len(ids)), tx.Commit()
}
