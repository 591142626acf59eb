package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// Realistic-looking lead data. Sizes match what a CRM form sends: an encoded
// lead.created payload is about 300 bytes, its metadata about 250.
var (
	firstNames = []string{"Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances"}
	lastNames  = []string{"Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen"}
	companies  = []string{"Analytical Engines Ltd", "Compiler Systems Inc", "Bletchley Park Consulting", "Orbital Mechanics GmbH", "Kernel Works AB"}
	titles     = []string{"Head of Procurement", "VP Sales", "Chief Technology Officer", "Operations Manager", "IT Director"}
	sources    = []string{"web", "referral", "trade_show", "cold_call", "partner"}
	industries = []string{"manufacturing", "software", "logistics", "retail", "finance"}
	statuses   = []domain.LeadStatus{domain.LeadStatusNew, domain.LeadStatusContacted, domain.LeadStatusQualified, domain.LeadStatusUnqualified}
)

func ptr[T any](v T) *T { return &v }

// leadInput is the n-th lead's form, as a client would send it.
func leadInput(n int) domain.LeadInput {
	first, last := firstNames[n%len(firstNames)], lastNames[(n/len(firstNames))%len(lastNames)]
	return domain.LeadInput{
		Name:    fmt.Sprintf("%s %s", first, last),
		Email:   ptr(fmt.Sprintf("%s.%s.%d@example.com", strings.ToLower(first), strings.ToLower(last), n)),
		Phone:   ptr(fmt.Sprintf("+1 415 555 %04d", n%10000)),
		Company: ptr(companies[n%len(companies)]),
		Title:   ptr(titles[n%len(titles)]),
		Source:  ptr(sources[n%len(sources)]),
		OwnerID: ptr(fmt.Sprintf("user_%03d", n%200)),
		CustomFields: map[string]json.RawMessage{
			"industry":  json.RawMessage(`"` + industries[n%len(industries)] + `"`),
			"employees": json.RawMessage(fmt.Sprint(50 + n%5000)),
		},
	}
}

// newLeadID is shaped like the ids the command layer hands out.
func newLeadID() string {
	return "lead_" + strings.ReplaceAll(uuid.Must(uuid.NewV7()).String(), "-", "")
}

func benchMeta(org string, at time.Time) domain.Metadata {
	req := "req_" + strings.ReplaceAll(uuid.Must(uuid.NewRandom()).String(), "-", "")[:24]
	return domain.Metadata{
		EventID:       uuid.Must(uuid.NewV7()).String(),
		OccurredAt:    at.UTC().Truncate(time.Microsecond),
		OrgID:         org,
		Actor:         domain.Actor{Sub: "auth0|bench-user", Type: domain.ActorUser},
		RequestID:     req,
		CorrelationID: req,
	}
}

// leadCreated encodes the lead.created event of a new lead, exactly as the
// command layer does.
func leadCreated(id, org string, n int, at time.Time) (eventstore.EventData, error) {
	evs, err := domain.CreateLead(id, org, leadInput(n))
	if err != nil {
		return eventstore.EventData{}, err
	}
	return envelope.Encode(evs[0], benchMeta(org, at))
}

// sampleLeadCreatedJSON is a typical lead.created payload (pgbench's row).
func sampleLeadCreatedJSON() ([]byte, error) {
	d, err := leadCreated(newLeadID(), "org_bench", 1234, time.Now())
	return d.Data, err
}

// eventRow is an events table row as the store writes it.
type eventRow struct {
	position int64
	eventID  uuid.UUID
	stream   string
	version  int64
	typ      string
	data     []byte
	meta     []byte
}

// logGen produces a realistic event log: about 80% lead.created, the rest
// lead.updated and lead.status_changed on leads created earlier (picked
// uniformly, so a catch-up batch touches rows it must load first). Orgs,
// versions, statuses and timestamps are consistent, as if written through
// the commands.
type logGen struct {
	rng      *rand.Rand
	orgs     []string
	ids      []string
	versions []int32
	status   []uint8 // index into statuses
	org      []uint8
	pos      int64
	at       time.Time

	created, updated, statusChanged int64
}

func newLogGen(total int) *logGen {
	g := &logGen{
		rng: rand.New(rand.NewPCG(1, 2)),
		at:  time.Now().Add(-time.Duration(total) * time.Millisecond),
	}
	for i := range 20 {
		g.orgs = append(g.orgs, fmt.Sprintf("org_bench_%02d", i))
	}
	return g
}

func (g *logGen) next() (eventRow, error) {
	g.pos++
	g.at = g.at.Add(time.Millisecond)
	if len(g.ids) == 0 || g.rng.IntN(5) != 0 {
		id := newLeadID()
		o := uint8(g.rng.IntN(len(g.orgs)))
		d, err := leadCreated(id, g.orgs[o], len(g.ids), g.at)
		if err != nil {
			return eventRow{}, err
		}
		g.ids = append(g.ids, id)
		g.versions = append(g.versions, 1)
		g.status = append(g.status, 0)
		g.org = append(g.org, o)
		g.created++
		return g.row(id, 1, d)
	}
	i := g.rng.IntN(len(g.ids))
	var ev domain.Event
	if g.rng.IntN(2) == 0 {
		n := g.rng.IntN(1 << 20)
		ev = domain.LeadUpdated{
			Title: domain.OptOf(titles[n%len(titles)]),
			Phone: domain.OptOf(fmt.Sprintf("+1 415 555 %04d", n%10000)),
		}
		g.updated++
	} else {
		from := g.status[i]
		to := uint8((int(from) + 1 + g.rng.IntN(len(statuses)-1)) % len(statuses))
		ev = domain.LeadStatusChanged{From: statuses[from], To: statuses[to]}
		g.status[i] = to
		g.statusChanged++
	}
	d, err := envelope.Encode(ev, benchMeta(g.orgs[g.org[i]], g.at))
	if err != nil {
		return eventRow{}, err
	}
	g.versions[i]++
	return g.row(g.ids[i], int64(g.versions[i]), d)
}

func (g *logGen) row(id string, version int64, d eventstore.EventData) (eventRow, error) {
	eid, err := uuid.Parse(d.ID)
	if err != nil {
		return eventRow{}, err
	}
	return eventRow{
		position: g.pos, eventID: eid, stream: envelope.LeadStream(id), version: version,
		typ: d.Type, data: d.Data, meta: d.Metadata,
	}, nil
}
