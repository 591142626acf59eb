package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// receiver is a webhook endpoint on 127.0.0.1 served by this process. Its
// behaviour is one of: healthy, hang, reset, slow, huge, fail.
type receiver struct {
	behaviour string
	srv       *http.Server
	ln        net.Listener
	stop      chan struct{} // closed to release hanging handlers

	mu       sync.Mutex
	secret   []byte
	receipts map[string][]receipt // by webhook-id
	requests int
	bad      []string // malformed deliveries (first few)
}

type receipt struct {
	at         time.Time
	bodyID     string
	occurredAt time.Time
	sigOK      bool
}

func startReceiver(sc *scope, behaviour string) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{behaviour: behaviour, ln: ln, stop: make(chan struct{}), receipts: map[string][]receipt{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	closeOnce := sync.OnceFunc(func() {
		close(r.stop)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if r.srv.Shutdown(ctx) != nil {
			r.srv.Close()
		}
	})
	sc.onClose(closeOnce)
	sc.h.onCleanup(closeOnce)
	return r, nil
}

func (r *receiver) url() string { return "http://" + r.ln.Addr().String() + "/hook/" + r.behaviour }

func (r *receiver) setSecret(whsec string) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(whsec, "whsec_"))
	if err != nil || !strings.HasPrefix(whsec, "whsec_") {
		return fmt.Errorf("webhook secret %q is not whsec_<base64>", truncate(whsec, 12))
	}
	r.mu.Lock()
	r.secret = key
	r.mu.Unlock()
	return nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.requests++
	r.mu.Unlock()
	switch r.behaviour {
	case "hang":
		// Never answers: the sender's timeout has to end it.
		select {
		case <-req.Context().Done():
		case <-r.stop:
		}
		return
	case "reset":
		// A TCP reset instead of an answer.
		hj, ok := w.(http.Hijacker)
		if !ok {
			return
		}
		conn, _, err := hj.Hijack()
		if err != nil {
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		conn.Close()
		return
	case "slow":
		select {
		case <-time.After(8 * time.Second):
		case <-req.Context().Done():
			return
		case <-r.stop:
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	case "huge":
		// 2xx followed by 10 MB the sender has no reason to read.
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat("x", 64<<10))
		for range (10 << 20) / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		return
	case "fail":
		http.Error(w, `{"error":"always failing"}`, http.StatusInternalServerError)
		return
	}
	r.receive(w, req)
}

// receive records a delivery to the healthy receiver and checks that it
// is a Standard Webhooks message: webhook-id equal to the event's id, a
// signature over id.timestamp.body with the webhook's secret.
func (r *receiver) receive(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, 2<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	id := req.Header.Get("webhook-id")
	ts := req.Header.Get("webhook-timestamp")
	var p struct {
		ID         string    `json:"id"`
		Type       string    `json:"type"`
		OccurredAt time.Time `json:"occurred_at"`
	}
	jsonErr := json.Unmarshal(body, &p)
	r.mu.Lock()
	defer r.mu.Unlock()
	sigOK := verify(r.secret, id, ts, body, req.Header.Get("webhook-signature"))
	if id == "" || jsonErr != nil || p.ID != id || !sigOK {
		if len(r.bad) < 5 {
			r.bad = append(r.bad, fmt.Sprintf("webhook-id=%q body id=%q signature ok=%v json=%v", id, p.ID, sigOK, jsonErr))
		}
	}
	r.receipts[id] = append(r.receipts[id], receipt{at: at, bodyID: p.ID, occurredAt: p.OccurredAt, sigOK: sigOK})
	w.WriteHeader(http.StatusNoContent)
}

func verify(key []byte, id, ts string, body []byte, header string) bool {
	if key == nil || id == "" || ts == "" {
		return false
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(header) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return true
		}
	}
	return false
}

// subscribe registers the receiver for every event type and gives it the
// signing secret.
func (r *receiver) subscribe(ctx context.Context, a *api) error {
	rep := a.do(ctx, http.MethodPost, "/v1/webhooks", map[string]any{
		"url": r.url(), "events": []string{"*"}, "description": "faults " + r.behaviour,
	})
	if rep.err != nil {
		return rep.err
	}
	if rep.status != http.StatusCreated && rep.status != http.StatusOK {
		return fmt.Errorf("POST /v1/webhooks for the %s receiver: %d %s", r.behaviour, rep.status, truncate(string(rep.body), 300))
	}
	var hook struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(rep.body, &hook); err != nil {
		return err
	}
	if hook.Secret == "" {
		return errors.New("POST /v1/webhooks answered without a secret")
	}
	return r.setSecret(hook.Secret)
}

// got is a copy of the receipts by webhook-id.
func (r *receiver) got() (map[string][]receipt, int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string][]receipt, len(r.receipts))
	for k, v := range r.receipts {
		m[k] = append([]receipt(nil), v...)
	}
	return m, r.requests, append([]string(nil), r.bad...)
}

func (r *receiver) requestCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}
