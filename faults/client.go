package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var httpClient = &http.Client{
	Timeout: 15 * time.Second,
	Transport: &http.Transport{
		MaxIdleConns:        128,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// status is the HTTP status of a GET, 0 when there was no answer.
func status(ctx context.Context, url string) int {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// api calls one server as one organization.
type api struct {
	base  string
	token string
}

type reply struct {
	status int
	header http.Header
	body   []byte
	err    error // transport error: no answer
}

var reqSeq atomic.Int64

// newRequestID is unique within a run and valid as an X-Request-Id, so that
// the history can be searched for the request that wrote an event.
func newRequestID(prefix string) string {
	return fmt.Sprintf("%s.%d.%d", prefix, time.Now().UnixNano()%1e9, reqSeq.Add(1))
}

func (a *api) do(ctx context.Context, method, path string, body any, hdr ...string) reply {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return reply{err: err}
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return reply{status: resp.StatusCode, header: resp.Header, err: err}
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// record is one logical create the server acknowledged, and the
// acknowledged changes made to it since.
type record struct {
	kind    string // "leads" or "deals"
	id      string
	key     string   // Idempotency-Key, also stored in custom_fields.fault_key
	version int      // highest acknowledged version
	reqs    []string // request ids of acknowledged writes (the create included)
	created []string // request ids of every attempt of the create
	worker  int
}

// tally counts answers by kind, so that a check can say what clients saw.
type tally struct {
	mu          sync.Mutex
	byStatus    map[int]int
	transport   int
	refused     int // of transport: the connection was refused (no server listening)
	noRetry503  int
	replayed    int
	firstErrors map[string]string // a sample answer per status class
}

func newTally() *tally {
	return &tally{byStatus: map[int]int{}, firstErrors: map[string]string{}}
}

func (t *tally) add(r reply) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r.err != nil && r.status == 0 {
		t.transport++
		if errors.Is(r.err, syscall.ECONNREFUSED) {
			t.refused++
		}
		if _, ok := t.firstErrors["transport"]; !ok {
			t.firstErrors["transport"] = r.err.Error()
		}
		return
	}
	t.byStatus[r.status]++
	if r.status == http.StatusServiceUnavailable && r.header.Get("Retry-After") == "" {
		t.noRetry503++
	}
	if r.header.Get("Idempotent-Replayed") == "true" {
		t.replayed++
	}
	if r.status >= 400 {
		k := fmt.Sprint(r.status)
		if _, ok := t.firstErrors[k]; !ok {
			t.firstErrors[k] = truncate(string(r.body), 200)
		}
	}
}

// snapshot copies the counts (for the difference over a window).
func (t *tally) snapshot() (map[int]int, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[int]int, len(t.byStatus))
	for k, v := range t.byStatus {
		m[k] = v
	}
	return m, t.transport
}

func (t *tally) String() string {
	m, tr := t.snapshot()
	var codes []int
	for c := range m {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", m[c], c))
	}
	if tr > 0 {
		t.mu.Lock()
		refused := t.refused
		t.mu.Unlock()
		parts = append(parts, fmt.Sprintf("%d×no answer (%d refused, %d cut)", tr, refused, tr-refused))
	}
	return strings.Join(parts, " ")
}

func (t *tally) sample(k string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.firstErrors[k]
}

// ledger is what the clients were told: acknowledged creates and changes,
// and the creates still waiting for an answer.
type ledger struct {
	mu      sync.Mutex
	records []*record
	pending []*pendingCreate
	tally   *tally
	stuck   map[string]int // key → last status of a create that never settled
	patches int
}

type pendingCreate struct {
	kind     string
	key      string
	body     map[string]any
	attempts []string
	last     reply
	worker   int
}

func newLedger() *ledger { return &ledger{tally: newTally(), stuck: map[string]int{}} }

func (l *ledger) acked() []*record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*record(nil), l.records...)
}

// load is a set of writers, each running a bounded loop of creates (with
// an Idempotency-Key from the first attempt, retried with the same key on
// 5xx, 409 and no answer) and patches of its own acknowledged records.
type load struct {
	name    string
	a       *api
	l       *ledger
	workers int
	maxOps  int           // per worker
	pause   time.Duration // between a worker's operations
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startLoad(ctx context.Context, name string, a *api, l *ledger, workers, maxOps int, pause time.Duration) *load {
	ctx, cancel := context.WithCancel(ctx)
	ld := &load{name: name, a: a, l: l, workers: workers, maxOps: maxOps, pause: pause, cancel: cancel}
	for w := range workers {
		ld.wg.Add(1)
		goSafe(func() {
			defer ld.wg.Done()
			ld.worker(ctx, w)
		})
	}
	return ld
}

// stop ends the writers and waits for their last request.
func (ld *load) stop() {
	ld.cancel()
	ld.wg.Wait()
}

// wait lets the writers finish their bounded loops.
func (ld *load) wait() { ld.wg.Wait() }

func (ld *load) worker(ctx context.Context, w int) {
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	var mine []*record
	for n := 0; n < ld.maxOps && ctx.Err() == nil; n++ {
		if len(mine) > 0 && rng.IntN(100) < 30 {
			ld.patch(ctx, mine[rng.IntN(len(mine))], n)
		} else {
			kind := "leads"
			if rng.IntN(100) < 25 {
				kind = "deals"
			}
			if rec := ld.create(ctx, w, n, kind); rec != nil {
				mine = append(mine, rec)
			}
		}
		if ld.pause > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(ld.pause):
			}
		}
	}
}

func createBody(kind, key string) map[string]any {
	cf := map[string]any{"fault_key": key}
	if kind == "deals" {
		return map[string]any{"name": "deal " + key, "amount": 100, "currency": "EUR", "custom_fields": cf}
	}
	return map[string]any{"name": "lead " + key, "email": "x@example.com", "company": "start", "custom_fields": cf}
}

// retryable answers are those after which the create may or may not have
// happened, or is still running: the same key must be tried again.
func retryable(r reply) bool {
	return r.status == 0 || r.status >= 500 || r.status == http.StatusConflict
}

func (ld *load) create(ctx context.Context, w, n int, kind string) *record {
	key := fmt.Sprintf("%s-w%d-%d-%s", ld.name, w, n, kind)
	p := &pendingCreate{kind: kind, key: key, body: createBody(kind, key), worker: w}
	// Bounded: at most 15 attempts, backing off; what is still open when
	// the load stops is settled after the faults (settle).
	for attempt := 0; attempt < 15; attempt++ {
		if rec, done := ld.l.attemptCreate(ctx, ld.a, p); done {
			return rec
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(100*(attempt+1)) * time.Millisecond):
		}
	}
	ld.l.mu.Lock()
	ld.l.pending = append(ld.l.pending, p)
	ld.l.mu.Unlock()
	return nil
}

// attemptCreate makes one attempt; done is true once the create has an
// answer that is not worth retrying (rec is nil for a 4xx refusal).
func (l *ledger) attemptCreate(ctx context.Context, a *api, p *pendingCreate) (*record, bool) {
	rid := newRequestID("c")
	p.attempts = append(p.attempts, rid)
	// The request must not be cut by the load stopping: a cut request
	// is an unknown outcome made by the suite, not by the server.
	r := a.do(context.WithoutCancel(ctx), http.MethodPost, "/v1/"+p.kind, p.body, "Idempotency-Key", p.key, "X-Request-Id", rid)
	l.tally.add(r)
	p.last = r
	if r.status >= 200 && r.status < 300 {
		var obj struct {
			ID      string `json:"id"`
			Version int    `json:"version"`
		}
		if err := json.Unmarshal(r.body, &obj); err != nil || obj.ID == "" {
			return nil, false
		}
		rec := &record{kind: p.kind, id: obj.ID, key: p.key, version: obj.Version, worker: p.worker,
			reqs: nil, created: append([]string(nil), p.attempts...)}
		l.mu.Lock()
		l.records = append(l.records, rec)
		l.mu.Unlock()
		return rec, true
	}
	if retryable(r) {
		return nil, false
	}
	return nil, true
}

func (ld *load) patch(ctx context.Context, rec *record, n int) {
	rid := newRequestID("p")
	var body map[string]any
	if rec.kind == "deals" {
		body = map[string]any{"amount": 1000 + n}
	} else {
		body = map[string]any{"company": "c-" + rid}
	}
	r := ld.a.do(context.WithoutCancel(ctx), http.MethodPatch, "/v1/"+rec.kind+"/"+rec.id, body, "X-Request-Id", rid)
	ld.l.tally.add(r)
	if r.status >= 200 && r.status < 300 {
		var obj struct {
			Version int `json:"version"`
		}
		_ = json.Unmarshal(r.body, &obj)
		ld.l.mu.Lock()
		rec.reqs = append(rec.reqs, rid)
		if obj.Version > rec.version {
			rec.version = obj.Version
		}
		ld.l.patches++
		ld.l.mu.Unlock()
	}
}

// settle retries every create that never got a definite answer, with its
// key, until each is answered or the time is up: after the faults a
// retry must either return the record or create it — never stay 409.
func (l *ledger) settle(ctx context.Context, a *api, limit time.Duration) (settled, stuck int, last map[string]int) {
	l.mu.Lock()
	open := l.pending
	l.pending = nil
	l.mu.Unlock()
	deadline := time.Now().Add(limit)
	for len(open) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		var still []*pendingCreate
		for _, p := range open {
			if _, done := l.attemptCreate(ctx, a, p); done {
				settled++
				continue
			}
			still = append(still, p)
		}
		open = still
		if len(open) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	last = map[string]int{}
	for _, p := range open {
		last[fmt.Sprint(p.last.status)]++
		l.mu.Lock()
		l.stuck[p.key] = p.last.status
		l.mu.Unlock()
	}
	return settled, len(open), last
}

func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
