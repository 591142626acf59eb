package envelope

// Run with .ci/fuzz, or: go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime 10s ./envelope

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/eventstore"
)

// FuzzDecode feeds stored events (type, stream, metadata and payload as
// any backend might hand them back, including rows written by older or
// broken builds) to Decode. It must never panic; what it accepts has a
// schema version, a UTC occurred_at, the stream's kind and id, and survives
// Encode then Decode unchanged.
func FuzzDecode(f *testing.F) {
	meta := []byte(`{"event_id":"evt_1","occurred_at":"2026-03-15T14:30:00+02:00","org_id":"org","actor":{"sub":"u","type":"user"},"request_id":"req_1","schema_version":1}`)
	f.Add(domain.EventLeadCreated, "lead-lead_1", meta, []byte(`{"id":"lead_1","name":"Ada","status":"new","custom_fields":{"tier":"gold"}}`))
	f.Add(domain.EventDealCreated, "deal-deal_1", meta, []byte(`{"id":"deal_1","name":"D","amount":0.1,"currency":"EUR","stage":"qualification"}`))
	f.Add(domain.EventLeadDeleted, "lead-x", []byte(`{}`), []byte(`{}`))
	f.Add(domain.EventLeadUpdated, "other", []byte(`{"schema_version":7}`), []byte(`{}`))
	f.Add(domain.EventLeadUpdated, "lead-", []byte(`{"occurred_at":"yesterday"}`), []byte(`{}`))
	f.Add("lead.unknown", "lead-1", []byte(`null`), []byte(`null`))
	f.Add(domain.EventDealWon, "deal-1", []byte(`{"schema_version":-1}`), []byte(`[]`))
	f.Fuzz(func(t *testing.T, typ, stream string, metadata, data []byte) {
		rec := eventstore.RecordedEvent{ID: "evt_stored", StreamID: stream, Type: typ, Version: 3, Position: 9,
			Data: data, Metadata: metadata, RecordedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))}
		env, err := Decode(rec)
		if err != nil {
			return
		}
		if env.Meta.SchemaVersion < 1 || env.Meta.EventID == "" || env.Meta.OccurredAt.Location() != time.UTC {
			t.Fatalf("decoded metadata %+v", env.Meta)
		}
		if kind, id, ok := ParseStream(stream); env.Kind != kind || env.RecordID != id || (ok != (env.Kind != "")) {
			t.Fatalf("stream %q decoded as %q/%q", stream, env.Kind, env.RecordID)
		}
		if env.Version != rec.Version || env.Position != rec.Position || env.StreamID != stream {
			t.Fatalf("positions not kept: %+v", env)
		}
		again, err := Encode(env.Event, env.Meta)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		rec2 := rec
		rec2.Type, rec2.Data, rec2.Metadata = again.Type, again.Data, again.Metadata
		env2, err := Decode(rec2)
		if err != nil {
			t.Fatalf("decode of our own encoding: %v", err)
		}
		m1, _ := json.Marshal(env.Meta)
		m2, _ := json.Marshal(env2.Meta)
		_, _, d1, _ := domain.EncodeEvent(env.Event)
		_, _, d2, _ := domain.EncodeEvent(env2.Event)
		if !bytes.Equal(m1, m2) || !bytes.Equal(d1, d2) {
			t.Fatalf("round trip changed the event:\n%s %s\n%s %s", m1, d1, m2, d2)
		}
	})
}
