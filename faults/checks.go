package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// positions is what /metrics says about the projections.
type positions struct {
	head        uint64
	projections map[string]uint64
	other       map[string][]string // projection → its other metric lines (state, errors, …)
}

// scrapePositions reads salesos_projection_position and
// salesos_eventstore_head_position. Two gauges do not need a Prometheus
// parser: the lines are "name{projection="x"} value" and "name value".
func scrapePositions(ctx context.Context, base string) (positions, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		return positions{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return positions{}, fmt.Errorf("/metrics answered %d", resp.StatusCode)
	}
	p := positions{projections: map[string]uint64{}, other: map[string][]string{}}
	sawHead := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, _ := strings.Cut(line, " ")
		value := func() uint64 {
			f, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return uint64(f)
		}
		switch {
		case name == "salesos_eventstore_head_position":
			p.head, sawHead = value(), true
		case strings.HasPrefix(name, `salesos_projection_position{projection="`):
			proj := strings.TrimSuffix(strings.TrimPrefix(name, `salesos_projection_position{projection="`), `"}`)
			p.projections[proj] = value()
		case !strings.HasPrefix(line, "#") && strings.Contains(name, `projection="`) &&
			!strings.HasPrefix(name, "salesos_projection_lag_events{"):
			// Whatever else the server says about a projection (its state,
			// last error, parked events) goes into a failure's message.
			_, after, _ := strings.Cut(name, `projection="`)
			proj, _, _ := strings.Cut(after, `"`)
			p.other[proj] = append(p.other[proj], line)
		}
	}
	if err := sc.Err(); err != nil {
		return p, err
	}
	if !sawHead {
		return p, fmt.Errorf("/metrics has no salesos_eventstore_head_position (the store could not be read)")
	}
	return p, nil
}

func (p positions) String() string {
	var names []string
	for n := range p.projections {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s=%d", n, p.projections[n]))
	}
	return strings.Join(parts, " ") + fmt.Sprintf(" head=%d", p.head)
}

func (p positions) behind() []string {
	var out []string
	for n, pos := range p.projections {
		if pos < p.head {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// checkProjections polls /metrics until every projection is at the head,
// with no restart of the server: a projection that stopped stays behind.
func checkProjections(ctx context.Context, h *harness, scn string, srv *server) {
	start := time.Now()
	deadline := start.Add(h.plan.catchUp)
	var last positions
	var lastErr error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		p, err := scrapePositions(ctx, srv.base())
		last, lastErr = p, err
		if err == nil && len(p.projections) > 0 && len(p.behind()) == 0 {
			h.pass(scn, "projections reach the event-store head without a restart", "%s after %s", p, time.Since(start).Round(10*time.Millisecond))
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	switch {
	case lastErr != nil:
		h.fail(scn, "projections reach the event-store head without a restart", "after %s: %v", h.plan.catchUp, lastErr)
	case len(last.projections) == 0:
		h.fail(scn, "projections reach the event-store head without a restart", "no salesos_projection_position in /metrics")
	default:
		var more []string
		for _, n := range last.behind() {
			more = append(more, last.other[n]...)
		}
		if len(more) > 6 {
			more = more[:6]
		}
		rz := truncate(string(srv.get(ctx, "/readyz")), 300)
		h.fail(scn, "projections reach the event-store head without a restart", "after %s still behind: %s (%s); /readyz said %s%s",
			h.plan.catchUp, strings.Join(last.behind(), ", "), last, rz, samples(more))
	}
}

// feedEvent is an event as GET /v1/events returns it.
type feedEvent struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	OccurredAt time.Time `json:"occurred_at"`
	Data       struct {
		Object struct {
			ID           string         `json:"id"`
			CustomFields map[string]any `json:"custom_fields"`
		} `json:"object"`
	} `json:"data"`
}

// allEvents pages through the organization's event feed, oldest first.
func allEvents(ctx context.Context, a *api) ([]feedEvent, error) {
	var out []feedEvent
	after := ""
	for page := 0; page < 10000; page++ {
		path := "/v1/events?limit=100"
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		r := a.do(ctx, http.MethodGet, path, nil)
		if r.err != nil {
			return out, r.err
		}
		if r.status != http.StatusOK {
			return out, fmt.Errorf("GET %s: %d %s", path, r.status, truncate(string(r.body), 200))
		}
		var body struct {
			Data       []feedEvent `json:"data"`
			HasMore    bool        `json:"has_more"`
			NextCursor *string     `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil {
			return out, err
		}
		out = append(out, body.Data...)
		if !body.HasMore || body.NextCursor == nil || *body.NextCursor == "" {
			return out, nil
		}
		after = *body.NextCursor
	}
	return out, fmt.Errorf("the event feed did not end within 10000 pages")
}

type historyEntry struct {
	EventID   string `json:"event_id"`
	Type      string `json:"type"`
	Version   int    `json:"version"`
	RequestID string `json:"request_id"`
}

// checkWrites holds the acknowledged writes against the history, the read
// model and the lists, and counts records per logical create.
func checkWrites(ctx context.Context, h *harness, scn string, a *api, l *ledger) {
	recs := l.acked()
	var (
		mu                                       sync.Mutex
		writes, inHistory, byID, twice, multiple int
		missHist, missByID, sampleTwice          []string
	)
	note := func(list *[]string, s string) {
		if len(*list) < 3 {
			*list = append(*list, s)
		}
	}
	jobs := make(chan *record)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		goSafe(func() {
			defer wg.Done()
			for rec := range jobs {
				hr := a.do(ctx, http.MethodGet, "/v1/"+rec.kind+"/"+rec.id+"/history", nil)
				var hist struct {
					Data []historyEntry `json:"data"`
				}
				histErr := ""
				if hr.err != nil || hr.status != http.StatusOK || json.Unmarshal(hr.body, &hist) != nil {
					histErr = fmt.Sprintf("history of %s: %d %v %s", rec.id, hr.status, hr.err, truncate(string(hr.body), 120))
				}
				seenReq := map[string]int{}
				seenEvent := map[string]int{}
				creates := 0
				for _, e := range hist.Data {
					seenReq[e.RequestID]++
					seenEvent[e.EventID]++
					if strings.HasSuffix(e.Type, ".created") {
						creates++
					}
				}
				gr := a.do(ctx, http.MethodGet, "/v1/"+rec.kind+"/"+rec.id, nil)
				var obj struct {
					Version int `json:"version"`
				}
				_ = json.Unmarshal(gr.body, &obj)

				mu.Lock()
				// The create: any of its attempts' request ids (the one that
				// committed may not be the one that was answered).
				writes++
				createdSeen := false
				for _, rid := range rec.created {
					if seenReq[rid] > 0 {
						createdSeen = true
					}
				}
				if createdSeen && histErr == "" {
					inHistory++
				} else if histErr != "" {
					note(&missHist, histErr)
				} else {
					note(&missHist, fmt.Sprintf("%s %s: no create event from requests %v", rec.kind, rec.id, rec.created))
				}
				for _, rid := range rec.reqs {
					writes++
					if seenReq[rid] > 0 {
						inHistory++
					} else {
						note(&missHist, fmt.Sprintf("%s %s: acknowledged request %s not in history", rec.kind, rec.id, rid))
					}
				}
				for rid, n := range seenReq {
					if n > 1 && rid != "" {
						twice++
						note(&sampleTwice, fmt.Sprintf("%s %s: request %s applied %d times", rec.kind, rec.id, rid, n))
					}
				}
				for eid, n := range seenEvent {
					if n > 1 {
						twice++
						note(&sampleTwice, fmt.Sprintf("%s %s: event %s listed %d times", rec.kind, rec.id, eid, n))
					}
				}
				if creates != 1 && histErr == "" {
					multiple++
					note(&sampleTwice, fmt.Sprintf("%s %s: %d create events", rec.kind, rec.id, creates))
				}
				if gr.status == http.StatusOK && obj.Version >= rec.version {
					byID++
				} else {
					note(&missByID, fmt.Sprintf("GET %s %s: %d version %d < acknowledged %d", rec.kind, rec.id, gr.status, obj.Version, rec.version))
				}
				mu.Unlock()
			}
		})
	}
	for _, rec := range recs {
		jobs <- rec
	}
	close(jobs)
	wg.Wait()

	creates := len(recs)
	h.check(scn, "acknowledged writes are in the event history", inHistory == writes && writes > 0,
		"%d/%d (%d creates, %d patches)%s", inHistory, writes, creates, writes-creates, samples(missHist))
	h.check(scn, "acknowledged writes are in the read model by id", byID == creates && creates > 0,
		"%d/%d records at or past their acknowledged version%s", byID, creates, samples(missByID))

	// Lists, and one record per logical create (by its key).
	acked := map[string]*record{}
	for _, r := range recs {
		acked[r.id] = r
	}
	listed := map[string]bool{}
	perKey := map[string]int{}
	var listErr error
	for _, kind := range []string{"leads", "deals"} {
		items, err := listAll(ctx, a, kind)
		if err != nil {
			listErr = err
		}
		for _, it := range items {
			listed[it.ID] = true
			if k, _ := it.CustomFields["fault_key"].(string); k != "" {
				perKey[k]++
			}
		}
	}
	inList := 0
	var missList []string
	for _, r := range recs {
		if listed[r.id] {
			inList++
		} else {
			note(&missList, r.kind+" "+r.id)
		}
	}
	if listErr != nil {
		note(&missList, listErr.Error())
	}
	h.check(scn, "acknowledged creates are in the lists", inList == creates && creates > 0 && listErr == nil,
		"%d/%d%s", inList, creates, samples(missList))

	// The event store is the truth for duplicates: count create events
	// per key in the feed (the lists only show what the projections have).
	events, feedErr := allEvents(ctx, a)
	createdPerKey := map[string]int{}
	for _, e := range events {
		if strings.HasSuffix(e.Type, ".created") {
			if k, _ := e.Data.Object.CustomFields["fault_key"].(string); k != "" {
				createdPerKey[k]++
			}
		}
	}
	ackedKeys := map[string]bool{}
	for _, r := range recs {
		ackedKeys[r.key] = true
	}
	dupKeys, dupListed, unacked := 0, 0, 0
	var dupSamples []string
	for k, n := range createdPerKey {
		if n > 1 {
			dupKeys++
			note(&dupSamples, fmt.Sprintf("key %s created %d times", k, n))
		}
		if !ackedKeys[k] {
			unacked++
		}
	}
	for k, n := range perKey {
		if n > 1 {
			dupListed++
			note(&dupSamples, fmt.Sprintf("key %s listed %d times", k, n))
		}
	}
	if feedErr != nil {
		note(&dupSamples, "event feed: "+feedErr.Error())
	}
	h.check(scn, "nothing appears twice", dupKeys == 0 && dupListed == 0 && twice == 0 && multiple == 0 && feedErr == nil,
		"%d keys created once each in %d events; keys created twice %d, listed twice %d, requests or events applied twice %d, records with ≠1 create event %d%s",
		len(createdPerKey), len(events), dupKeys, dupListed, twice, multiple, samples(dupSamples))
	if unacked > 0 {
		h.info(scn, "%d creates committed whose client never got a 2xx (their keys did not settle; see the settle check)", unacked)
	}
}

type listItem struct {
	ID           string         `json:"id"`
	CustomFields map[string]any `json:"custom_fields"`
}

func listAll(ctx context.Context, a *api, kind string) ([]listItem, error) {
	var out []listItem
	cursor := ""
	for page := 0; page < 5000; page++ {
		path := "/v1/" + kind + "?limit=200"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		r := a.do(ctx, http.MethodGet, path, nil)
		if r.err != nil || r.status != http.StatusOK {
			return out, fmt.Errorf("GET %s: %d %v %s", path, r.status, r.err, truncate(string(r.body), 120))
		}
		var body struct {
			Data       []listItem `json:"data"`
			HasMore    bool       `json:"has_more"`
			NextCursor *string    `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil {
			return out, err
		}
		out = append(out, body.Data...)
		if !body.HasMore || body.NextCursor == nil {
			return out, nil
		}
		cursor = *body.NextCursor
	}
	return out, fmt.Errorf("the %s list did not end within 5000 pages", kind)
}

// checkSettled: every create that lacked an answer got one with its key.
func checkSettled(ctx context.Context, h *harness, scn string, a *api, l *ledger) {
	l.mu.Lock()
	open := len(l.pending)
	l.mu.Unlock()
	t0 := time.Now()
	settled, stuck, last := l.settle(ctx, a, h.plan.settle)
	detail := ""
	if stuck > 0 {
		detail = fmt.Sprintf("; last answers %v, e.g. %s", last, truncate(l.tally.sample(firstKey(last)), 160))
	}
	h.check(scn, "every create without an answer settles when retried with its Idempotency-Key", stuck == 0,
		"%d open after the faults, %d settled in %s, %d still unanswered%s", open, settled, time.Since(t0).Round(100*time.Millisecond), stuck, detail)
}

func firstKey(m map[string]int) string {
	for k := range m {
		return k
	}
	return ""
}

// checkAnswers: errors during faults follow the contract — a dependency
// away is 503 with Retry-After, never 500.
func checkAnswers(h *harness, scn string, l *ledger) {
	m, _ := l.tally.snapshot()
	l.tally.mu.Lock()
	noRA := l.tally.noRetry503
	l.tally.mu.Unlock()
	detail := ""
	if m[500] > 0 {
		detail = "; e.g. " + truncate(l.tally.sample("500"), 200)
	}
	h.check(scn, "no 500s; every 503 carries Retry-After", m[500] == 0 && noRA == 0,
		"answers: %s; 503 without Retry-After: %d%s", l.tally, noRA, detail)
}

// checkDeliveries waits until the healthy receiver has every event of
// the feed, then checks ids and signatures of every delivery it got.
func checkDeliveries(ctx context.Context, h *harness, scn string, a *api, healthy *receiver) []time.Duration {
	events, err := allEvents(ctx, a)
	if err != nil {
		h.fail(scn, "every event reaches the healthy webhook receiver", "event feed: %v", err)
		return nil
	}
	start := time.Now()
	deadline := start.Add(h.plan.delivery)
	var got map[string][]receipt
	var bad []string
	missing := 0
	for {
		got, _, bad = healthy.got()
		missing = 0
		for _, e := range events {
			if len(got[e.ID]) == 0 {
				missing++
			}
		}
		if missing == 0 || !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	deliveries, repeated, badSig, unstable := 0, 0, 0, 0
	var lat []time.Duration
	for _, e := range events {
		rs := got[e.ID]
		if len(rs) > 1 {
			repeated++
		}
		if len(rs) > 0 {
			lat = append(lat, rs[0].at.Sub(e.OccurredAt))
		}
	}
	for id, rs := range got {
		for _, r := range rs {
			deliveries++
			if !r.sigOK {
				badSig++
			}
			if r.bodyID != id {
				unstable++
			}
		}
	}
	var sample []string
	if missing > 0 {
		for _, e := range events {
			if len(got[e.ID]) == 0 && len(sample) < 3 {
				sample = append(sample, e.Type+" "+e.ID)
			}
		}
	}
	h.check(scn, "every event reaches the healthy webhook receiver", missing == 0 && len(events) > 0,
		"%d/%d events within %s of the end, %d deliveries (%d events delivered more than once)%s",
		len(events)-missing, len(events), time.Since(start).Round(100*time.Millisecond), deliveries, repeated, samples(sample))
	h.check(scn, "every delivery has a valid signature and a stable webhook-id", badSig == 0 && unstable == 0 && len(bad) == 0,
		"%d deliveries, bad signatures %d, webhook-id ≠ event id %d%s", deliveries, badSig, unstable, samples(bad))
	return lat
}

func samples(s []string) string {
	if len(s) == 0 {
		return ""
	}
	var b bytes.Buffer
	b.WriteString("; e.g. ")
	b.WriteString(strings.Join(s, " | "))
	return b.String()
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p)
	return s[i]
}
