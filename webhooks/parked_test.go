package webhooks_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/projections"
	"github.com/salesos/salesos/webhooks"
)

// A poison event appended behind the API's back (its data does not decode)
// is parked by every projection, the webhook fan-out included, and the
// events after it are still fanned out and delivered. /readyz stays ready
// but degraded and names the fan-out; /metrics counts the parked events.
func TestPoisonEventIsParkedAndDeliveriesGoOn(t *testing.T) {
	t.Parallel()
	e := start(t)
	rcv := newReceiver(t, nil)
	e.createWebhook(t, rcv.URL+"/hook", "lead.created")
	first := e.createLead(t, "Before")
	waitFor(t, "the first delivery", 15*time.Second, func() bool { return len(rcv.got()) == 1 })

	store := e.s.App.Store
	evs, err := store.ReadStream(t.Context(), envelope.LeadStream(first), 1, 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("read %s: %v", first, err)
	}
	var md map[string]any
	if err := json.Unmarshal(evs[0].Metadata, &md); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	md["event_id"] = id
	mdRaw, _ := json.Marshal(md)
	poisonStream := envelope.LeadStream("lead_poison" + strings.ReplaceAll(uuid.NewString(), "-", "")[:10])
	if _, err := store.Append(t.Context(), poisonStream, eventstore.NoStream, eventstore.EventData{
		ID: id, Type: "lead.created", Data: []byte(`{"name":5}`), Metadata: mdRaw,
	}); err != nil {
		t.Fatal(err)
	}
	after := e.createLead(t, "After")
	waitFor(t, "the delivery after the poison event", 15*time.Second, func() bool {
		for _, r := range rcv.got() {
			if strings.Contains(string(r.Body), after) {
				return true
			}
		}
		return false
	})
	head, err := store.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{projections.LeadsName, projections.DealsName, webhooks.FanOutName} {
		if err := e.s.App.Runner.WaitFor(t.Context(), name, head); err != nil {
			t.Fatalf("%s did not reach the head: %v", name, err)
		}
	}
	parked, err := projections.ListParked(t.Context(), e.s.App.ReadDB, "")
	if err != nil {
		t.Fatal(err)
	}
	byProjection := map[string]string{}
	for _, p := range parked {
		byProjection[p.Projection] = p.StreamID
	}
	if len(parked) != 2 || byProjection[webhooks.FanOutName] != poisonStream || byProjection[projections.LeadsName] != poisonStream {
		t.Fatalf("parked %+v: want the poison event in leads and %s", parked, webhooks.FanOutName)
	}

	resp, err := http.Get(e.s.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ready struct {
		Status  string            `json:"status"`
		Checks  map[string]string `json:"checks"`
		Reasons map[string]string `json:"reasons"`
	}
	_ = json.Unmarshal(body, &ready)
	if resp.StatusCode != 200 || ready.Status != "degraded" || ready.Checks["projections"] != "degraded" ||
		!strings.Contains(ready.Reasons["projections"], webhooks.FanOutName+" has 1 parked") {
		t.Fatalf("readyz with parked events: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get(e.s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`salesos_projection_parked_events{projection="webhook_fanout"} 1`,
		`salesos_projection_parked_events{projection="deals"} 0`,
		`salesos_projection_state{projection="webhook_fanout",state="parked"} 1`,
		`salesos_projection_state{projection="deals",state="running"} 1`,
		`salesos_projection_errors_total{projection="leads"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
