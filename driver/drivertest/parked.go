package drivertest

import (
	"reflect"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
)

func runParked(t *testing.T, d driver.Driver, open Open) {
	t.Run("ParkListRetryUnpark", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		first, later := now(), now().Add(time.Minute)
		ev := func(projection string, pos uint64, stream, msg string, attempts int, at time.Time) driver.ParkedEvent {
			return driver.ParkedEvent{
				Projection: projection, Position: pos, StreamID: stream, EventID: "e" + stream, EventType: "lead.updated",
				Error: msg, Attempts: attempts, FirstAttemptAt: at, LastAttemptAt: at,
			}
		}
		inTx(t, s, func(tx *sqlx.Tx) {
			if err := d.Park(ctx(t), tx, []driver.ParkedEvent{
				ev("leads", 7, "lead-a", "bad value", 1, first),
				ev("leads", 9, "lead-a", "held back", 0, first),
				ev("leads", 3, "lead-b", "bad json", 1, first),
				ev("deals", 5, "deal-c", "panic", 1, first),
			}); err != nil {
				t.Fatal(err)
			}
		})
		// Parking an event again adds its attempts, takes the new error
		// and time, and keeps the first attempt's time.
		inTx(t, s, func(tx *sqlx.Tx) {
			if err := d.Park(ctx(t), tx, []driver.ParkedEvent{ev("leads", 7, "lead-a", "still bad", 1, later)}); err != nil {
				t.Fatal(err)
			}
		})
		all, err := d.ListParked(ctx(t), s.Read, "")
		if err != nil {
			t.Fatal(err)
		}
		want := []driver.ParkedEvent{
			ev("deals", 5, "deal-c", "panic", 1, first),
			ev("leads", 3, "lead-b", "bad json", 1, first),
			ev("leads", 7, "lead-a", "still bad", 2, first),
			ev("leads", 9, "lead-a", "held back", 0, first),
		}
		want[2].LastAttemptAt = later
		if !reflect.DeepEqual(all, want) {
			t.Fatalf("ListParked of every projection:\n got  %+v\n want %+v", all, want)
		}
		if leads, err := d.ListParked(ctx(t), s.Read, "leads"); err != nil || len(leads) != 3 {
			t.Fatalf("ListParked of leads: %+v, %v", leads, err)
		}
		if held, err := d.HeldStreams(ctx(t), s.Read, "leads"); err != nil || !reflect.DeepEqual(held, map[string]uint64{"lead-a": 7, "lead-b": 3}) {
			t.Fatalf("HeldStreams: %v, %v", held, err)
		}
		if n, err := d.CountParked(ctx(t), s.Read); err != nil || !reflect.DeepEqual(n, map[string]int64{"leads": 3, "deals": 1}) {
			t.Fatalf("CountParked: %v, %v", n, err)
		}
		// A retry that fails again counts the attempt and holds the rest of
		// its stream back behind it.
		inTx(t, s, func(tx *sqlx.Tx) {
			if err := d.RecordParkedAttempt(ctx(t), tx, "leads", 7, "bad again", later); err != nil {
				t.Fatal(err)
			}
			if err := d.HoldBackParked(ctx(t), tx, "leads", "lead-a", 7, "behind 7"); err != nil {
				t.Fatal(err)
			}
		})
		stream, err := d.ListParkedStream(ctx(t), s.Read, "leads", "lead-a")
		if err != nil || len(stream) != 2 {
			t.Fatalf("ListParkedStream: %+v, %v", stream, err)
		}
		if e := stream[0]; e.Position != 7 || e.Attempts != 3 || e.Error != "bad again" || !e.LastAttemptAt.Equal(later) {
			t.Fatalf("after RecordParkedAttempt: %+v", e)
		}
		if e := stream[1]; e.Position != 9 || e.Attempts != 0 || e.Error != "behind 7" {
			t.Fatalf("after HoldBackParked: %+v", e)
		}
		// A retry that succeeds unparks; a rebuild unparks everything of
		// its projection.
		inTx(t, s, func(tx *sqlx.Tx) {
			if err := d.Unpark(ctx(t), tx, "leads", 7); err != nil {
				t.Fatal(err)
			}
		})
		if held, err := d.HeldStreams(ctx(t), s.Read, "leads"); err != nil || !reflect.DeepEqual(held, map[string]uint64{"lead-a": 9, "lead-b": 3}) {
			t.Fatalf("HeldStreams after Unpark: %v, %v", held, err)
		}
		inTx(t, s, func(tx *sqlx.Tx) {
			if err := d.UnparkAll(ctx(t), tx, "leads"); err != nil {
				t.Fatal(err)
			}
		})
		if n, err := d.CountParked(ctx(t), s.Read); err != nil || !reflect.DeepEqual(n, map[string]int64{"deals": 1}) {
			t.Fatalf("CountParked after UnparkAll: %v, %v", n, err)
		}
	})
}
