package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/salesos/salesos/auth"
)

// acceptAll is a verifier for tests that stop before any handler runs.
type acceptAll struct{}

func (acceptAll) Verify(context.Context, string) (auth.Principal, error) {
	return auth.Principal{Sub: "u", Type: auth.ActorUser, OrgID: "org", Plan: auth.PlanStarter, Scopes: []string{"write:leads"}}, nil
}

// bodyTimeoutServer serves the API with a short body timeout on a loopback
// socket; handlers are never reached in these tests, so no storage is wired.
func bodyTimeoutServer(t *testing.T, timeout time.Duration) string {
	t.Helper()
	s := New(Deps{Verifier: acceptAll{}, Logger: slog.New(slog.DiscardHandler), BodyTimeout: timeout})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestSlowBodyIsTimedOut: a client that trickles its body is answered 408
// in the contract's body once the body timeout passes, and its connection
// is closed, instead of holding a goroutine for as long as it likes.
func TestSlowBodyIsTimedOut(t *testing.T) {
	t.Parallel()
	addr := bodyTimeoutServer(t, 300*time.Millisecond)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Bound the whole exchange, so a server that never answers fails the
	// test instead of hanging it.
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	body := `{"name":"` + strings.Repeat("a", 200) + `"}`
	if _, err := fmt.Fprintf(conn, "POST /v1/leads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t.t.t\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{", len(body)); err != nil {
		t.Fatal(err)
	}
	// One byte every 50 ms: 200 bytes would take 10 s.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 1; i < len(body); i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				return
			}
		}
	}()

	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a slow body: %v", err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408; body %s", resp.StatusCode, raw)
	}
	var e struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Details   []any  `json:"details"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatalf("body is not the contract's error: %s", raw)
	}
	if e.Code != "request_timeout" || e.Message == "" || e.Details == nil || e.RequestID != resp.Header.Get("X-Request-Id") || e.RequestID == "" {
		t.Errorf("error body %s (X-Request-Id %q)", raw, resp.Header.Get("X-Request-Id"))
	}
	if !resp.Close {
		t.Errorf("a timed-out body leaves the connection open (Connection: %q)", resp.Header.Get("Connection"))
	}
	// The server hangs up: what is left of the body must not be read as
	// the next request.
	if _, err := br.ReadByte(); err == nil {
		t.Error("the connection carries more data after the 408")
	}
}

// TestBodyInTimeIsRead: a body that arrives within the timeout reaches
// the validation behind it (here: refused for its NUL, so no storage is
// needed), and the connection stays usable for the next request.
func TestBodyInTimeIsRead(t *testing.T) {
	t.Parallel()
	addr := bodyTimeoutServer(t, 5*time.Second)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	body := `{"name":"a\u0000"}`
	for i := 0; i < 2; i++ {
		if _, err := fmt.Fprintf(conn, "POST /v1/leads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t.t.t\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "invalid_characters") {
			t.Fatalf("request %d: status %d, body %s", i, resp.StatusCode, raw)
		}
	}
}
