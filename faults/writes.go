// The writes check: every acknowledged write is in the event history, in
// the read model and in the lists, and no logical create is stored twice.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

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
