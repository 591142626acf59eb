package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/domain"
)

const (
	fanoutEvents   = 10_000
	fanoutWebhooks = 3
	// fanoutRate is the paced run's append rate: 800 events/s offers 2,400
	// deliveries/s to three webhooks, a fifth above the bar's 2,000.
	fanoutRate = 800
)

// runFanout: three webhooks on a local receiver, 10,000 lead events
// appended through the command handler by concurrent writers; measures
// deliveries per second (from the first append to the last receipt) and
// the latency from each event's append (its occurred_at) to its receipt.
//
// It runs twice. webhook_fanout appends at a steady fanoutRate, which is
// how the bar reads: the service sustains 2,000 deliveries/s and delivers
// each within a second while doing so. webhook_fanout_burst appends as fast
// as the writers can, far faster than deliveries go out; its latency is
// mostly time spent queued behind the burst, and it shows the ceiling of
// the delivery rate.
func runFanout(ctx context.Context, o *options, e *env) error {
	if err := fanoutOnce(ctx, o, e, benchFanout, fanoutRate); err != nil {
		return err
	}
	return fanoutOnce(ctx, o, e, benchFanoutBurst, 0)
}

func fanoutOnce(ctx context.Context, o *options, e *env, name string, rate float64) error {
	if err := e.reset(ctx); err != nil {
		return err
	}
	rcv, err := newReceiver()
	if err != nil {
		return err
	}
	defer rcv.close()
	s, err := startServer(ctx, e.url, func(c *app.Config) { c.WebhookAllowPrivate = true })
	if err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	defer func() {
		if cerr := s.close(); cerr != nil {
			logf("%s: serve: %v", name, cerr)
		}
	}()
	for i := range fanoutWebhooks {
		body, _ := json.Marshal(map[string]any{"url": fmt.Sprintf("%s/hook/%d", rcv.url, i), "events": []string{"lead.*"}})
		st, _, raw, err := s.do(ctx, http.MethodPost, "/v1/webhooks", body, nil)
		if err != nil || st != http.StatusCreated {
			return fmt.Errorf("create webhook: %d %s %v", st, raw, err)
		}
	}
	cmd := &commands.Handler{Store: s.app.Store}
	meta := commands.Meta{OrgID: httpOrg, Actor: domain.Actor{Sub: "bench", Type: domain.ActorClient}}
	want := int64(fanoutEvents * fanoutWebhooks)
	pace := "as fast as the writers go"
	if rate > 0 {
		pace = fmt.Sprintf("paced at %.0f events/s", rate)
	}
	logf("%s: %d events x %d webhooks, %d writers, %s", name, fanoutEvents, fanoutWebhooks, o.concurrency, pace)

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var appendErr atomic.Value
	for range o.concurrency {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > fanoutEvents || ctx.Err() != nil {
					return
				}
				if rate > 0 {
					// Event n is due at start + (n-1)/rate.
					due := start.Add(time.Duration(float64(n-1) / rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						t := time.NewTimer(d)
						select {
						case <-t.C:
						case <-ctx.Done():
							t.Stop()
							return
						}
					}
				}
				if _, err := cmd.CreateLead(ctx, meta, leadInput(int(n))); err != nil {
					appendErr.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := appendErr.Load().(error); err != nil {
		return err
	}
	appended := time.Since(start)
	deadline := time.Now().Add(5 * time.Minute)
	for rcv.count.Load() < want {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("only %d of %d deliveries arrived", rcv.count.Load(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := rcv.last().Sub(start)
	r := result{
		Bench: name, Backend: "postgres", Concurrency: o.concurrency, Events: fanoutEvents,
		Ops: want, Seconds: elapsed.Seconds(), OpsPerSec: float64(want) / elapsed.Seconds(),
		Note: fmt.Sprintf("deliveries to a loopback receiver, %d webhooks on lead.*, events %s; rate from the first append to the last receipt (the appends took %.1fs); latency from the event's occurred_at to its receipt",
			fanoutWebhooks, pace, appended.Seconds()),
	}
	r.setLatencies(&rcv.lat)
	r.Errors = rcv.dupes.Load()
	if rate > 0 {
		r.bar("ops_per_sec >= 2000 and p99_ms < 1000", r.OpsPerSec >= 2000 && r.P99ms < 1000)
	}
	emit(r)
	return nil
}

// receiver counts deliveries and their latency.
type receiver struct {
	srv   *http.Server
	url   string
	count atomic.Int64
	dupes atomic.Int64

	mu     sync.Mutex
	seen   map[string]bool
	lat    samples
	lastAt time.Time
}

func newReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + ln.Addr().String(), seen: map[string]bool{}}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	body, _ := io.ReadAll(req.Body)
	var p struct {
		OccurredAt time.Time `json:"occurred_at"`
	}
	_ = json.Unmarshal(body, &p)
	key := req.URL.Path + " " + req.Header.Get("webhook-id")
	r.mu.Lock()
	if r.seen[key] {
		r.dupes.Add(1)
	} else {
		r.seen[key] = true
		r.lat.add(now.Sub(p.OccurredAt))
		r.lastAt = now
		r.count.Add(1)
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) last() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastAt
}

func (r *receiver) close() { r.srv.Close() }
