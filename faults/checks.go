// The checks on answers (settled creates, 503s with Retry-After) and on
// webhook deliveries, and the helpers the checks' reports share.

package main

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

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
