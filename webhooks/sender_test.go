package webhooks

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// receiver is a loopback HTTP server that counts the requests it gets.
type receiver struct {
	*httptest.Server
	hits atomic.Int64
}

func newReceiver(t *testing.T, h http.HandlerFunc) *receiver {
	t.Helper()
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		h(w, req)
	}))
	t.Cleanup(r.Close)
	return r
}

// loopbackSender allows private targets, since every test receiver is on
// 127.0.0.1.
func loopbackSender(cfg SenderConfig) *Sender {
	cfg.AllowPrivate = true
	return NewSender(cfg)
}

func TestSendSuccess(t *testing.T) {
	secret := mustSecret(t)
	body := []byte(testBody)

	type received struct {
		method, path string
		header       http.Header
		body         []byte
		verifyErr    error
	}
	got := make(chan received, 1)
	rcv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("receiver: reading body: %v", err)
		}
		// Verify what actually arrived on the wire with the reference
		// implementation, as a real receiver would.
		got <- received{r.Method, r.URL.RequestURI(), r.Header.Clone(), b, verifier(t, secret).Verify(b, r.Header)}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"ok":true}`)
	})

	h, err := Headers(secret, "msg_1", time.Now(), body)
	if err != nil {
		t.Fatalf("Headers: %v", err)
	}
	h.Set("X-Extra", "passed-through")

	a := loopbackSender(SenderConfig{}).Send(context.Background(), rcv.URL+"/hooks/salesos?x=1", h, body)

	if a.Err != nil || a.StatusCode != http.StatusAccepted || !a.Success() {
		t.Fatalf("Send = %+v, want 202 success", a)
	}
	if a.ResponseExcerpt != `{"ok":true}` {
		t.Errorf("ResponseExcerpt = %q", a.ResponseExcerpt)
	}
	if a.Duration <= 0 {
		t.Errorf("Duration = %v, want > 0", a.Duration)
	}

	r := <-got
	if r.method != http.MethodPost || r.path != "/hooks/salesos?x=1" {
		t.Errorf("receiver got %s %s, want POST /hooks/salesos?x=1", r.method, r.path)
	}
	if string(r.body) != testBody {
		t.Errorf("receiver got body %q, want %q", r.body, testBody)
	}
	if r.verifyErr != nil {
		t.Errorf("receiver could not verify signature: %v", r.verifyErr)
	}
	for name, want := range map[string]string{
		"User-Agent":        "SalesOS-Webhooks/1",
		"Content-Type":      "application/json",
		"Webhook-Id":        "msg_1",
		"Webhook-Timestamp": h.Get("webhook-timestamp"),
		"Webhook-Signature": h.Get("webhook-signature"),
		"X-Extra":           "passed-through",
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("receiver got %s %q, want %q", name, got, want)
		}
	}
}

func TestSendFixedHeadersWin(t *testing.T) {
	got := make(chan [2]string, 1)
	rcv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		got <- [2]string{r.Header.Get("User-Agent"), r.Header.Get("Content-Type")}
	})
	extra := http.Header{"User-Agent": {"curl/8"}, "Content-Type": {"text/plain"}}
	a := loopbackSender(SenderConfig{UserAgent: "SalesOS-Webhooks-Test/2"}).Send(context.Background(), rcv.URL, extra, []byte("{}"))
	if !a.Success() {
		t.Fatalf("Send = %+v, want success", a)
	}
	if h := <-got; h != [2]string{"SalesOS-Webhooks-Test/2", "application/json"} {
		t.Errorf("receiver got User-Agent %q, Content-Type %q", h[0], h[1])
	}
}

func TestSendFailureStatuses(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusNotFound, http.StatusGone, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			rcv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
				io.WriteString(w, "nope: "+http.StatusText(status))
			})
			a := loopbackSender(SenderConfig{}).Send(context.Background(), rcv.URL, nil, []byte("{}"))
			if a.Success() {
				t.Fatalf("Send = %+v, want failure", a)
			}
			if a.Err != nil || a.StatusCode != status {
				t.Fatalf("Send = %+v, want status %d and no error", a, status)
			}
			if want := "nope: " + http.StatusText(status); a.ResponseExcerpt != want {
				t.Errorf("ResponseExcerpt = %q, want %q", a.ResponseExcerpt, want)
			}
		})
	}
}

func TestSendDoesNotFollowRedirects(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			target := newReceiver(t, func(http.ResponseWriter, *http.Request) {})
			redirector := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL+"/landing", status)
			})
			a := loopbackSender(SenderConfig{}).Send(context.Background(), redirector.URL, nil, []byte("{}"))
			if a.Err != nil || a.StatusCode != status || a.Success() {
				t.Fatalf("Send = %+v, want unsuccessful %d without error", a, status)
			}
			if n := target.hits.Load(); n != 0 {
				t.Errorf("redirect target got %d requests, want 0", n)
			}
		})
	}
}

func TestSendTimeout(t *testing.T) {
	release := make(chan struct{})
	rcv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		// Never answer. Reading the body to EOF lets the server notice the
		// client hanging up (which cancels r.Context()); release is a
		// backstop so the server's Close cannot wait forever.
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before rcv.Close (LIFO)
	a := loopbackSender(SenderConfig{Timeout: 200 * time.Millisecond}).Send(context.Background(), rcv.URL, nil, []byte("{}"))
	if a.Err == nil || a.StatusCode != 0 || a.Success() {
		t.Fatalf("Send = %+v, want transport error and status 0", a)
	}
	if !errors.Is(a.Err, context.DeadlineExceeded) {
		t.Errorf("Err = %v, want it to wrap context.DeadlineExceeded", a.Err)
	}
	if a.Duration < 200*time.Millisecond {
		t.Errorf("Duration = %v, want at least the 200ms timeout", a.Duration)
	}
}

func TestSendHonoursCallerCancellation(t *testing.T) {
	rcv := newReceiver(t, func(http.ResponseWriter, *http.Request) {})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a := loopbackSender(SenderConfig{}).Send(ctx, rcv.URL, nil, []byte("{}"))
	if !errors.Is(a.Err, context.Canceled) || a.StatusCode != 0 {
		t.Fatalf("Send = %+v, want context.Canceled", a)
	}
	if n := rcv.hits.Load(); n != 0 {
		t.Errorf("receiver got %d requests, want 0", n)
	}
}

func TestSendCapsResponseExcerpt(t *testing.T) {
	big := strings.Repeat("0123456789", 20_000) // 200 KB, beyond the drain limit too
	rcv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, big)
	})

	t.Run("configured", func(t *testing.T) {
		a := loopbackSender(SenderConfig{MaxResponseBytes: 100}).Send(context.Background(), rcv.URL, nil, []byte("{}"))
		if a.Err != nil || a.StatusCode != http.StatusInternalServerError {
			t.Fatalf("Send = %+v", a)
		}
		if a.ResponseExcerpt != big[:100] {
			t.Errorf("ResponseExcerpt = %q (%d bytes), want the first 100 bytes", a.ResponseExcerpt, len(a.ResponseExcerpt))
		}
	})
	t.Run("default", func(t *testing.T) {
		a := loopbackSender(SenderConfig{}).Send(context.Background(), rcv.URL, nil, []byte("{}"))
		if a.Err != nil || a.ResponseExcerpt != big[:4096] {
			t.Errorf("Send = err %v, %d-byte excerpt; want the first 4096 bytes", a.Err, len(a.ResponseExcerpt))
		}
	})
}

func TestSendExcerptIsValidUTF8(t *testing.T) {
	rcv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok \xff bin\x00ary ☃☃☃"))
	})
	// 19 bytes end inside the second snowman; the exact truncation rules are
	// covered by TestSanitizeExcerpt.
	a := loopbackSender(SenderConfig{MaxResponseBytes: 19}).Send(context.Background(), rcv.URL, nil, []byte("{}"))
	if !a.Success() {
		t.Fatalf("Send = %+v, want success", a)
	}
	got := a.ResponseExcerpt
	if !utf8.ValidString(got) || strings.ContainsRune(got, 0) || len(got) > 19 {
		t.Errorf("ResponseExcerpt = %q: not valid, NUL-free and within 19 bytes", got)
	}
	if want := "ok \uFFFD bin\uFFFDary"; !strings.HasPrefix(got, want) {
		t.Errorf("ResponseExcerpt = %q, want prefix %q", got, want)
	}
}

func TestSanitizeExcerpt(t *testing.T) {
	tests := []struct {
		in    string
		limit int
		want  string
	}{
		{"plain", 10, "plain"},
		{"", 10, ""},
		{"héllo", 10, "héllo"},
		{"ab☃", 4, "ab"},                   // cut inside the rune: dropped, not replaced
		{"ab☃", 5, "ab☃"},                  // complete rune kept
		{"a\xffb", 10, "a\uFFFDb"},         // invalid byte replaced
		{"a\x00b", 10, "a\uFFFDb"},         // NUL replaced for PostgreSQL text
		{"\xff\xff\xff\xff", 4, "\uFFFD"},  // a run of invalid bytes is one replacement
		{"\xffa\xffb", 4, "\uFFFDa"},       // replacements never push it past limit
		{"abc\xe2\x98", 5, "abc"},          // partial rune at the limit
		{"abc\xe2\x98x", 10, "abc\uFFFDx"}, // truncated rune in the middle
	}
	for _, tt := range tests {
		got := sanitizeExcerpt([]byte(tt.in), tt.limit)
		if got != tt.want {
			t.Errorf("sanitizeExcerpt(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
		}
		if !utf8.ValidString(got) || len(got) > tt.limit || strings.ContainsRune(got, 0) {
			t.Errorf("sanitizeExcerpt(%q, %d) = %q: not valid, NUL-free and within limit", tt.in, tt.limit, got)
		}
	}
}

func TestSendRefusesNonPublicTargetsAtDialTime(t *testing.T) {
	rcv := newReceiver(t, func(http.ResponseWriter, *http.Request) {})
	_, port, err := net.SplitHostPort(rcv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sender := NewSender(SenderConfig{}) // AllowPrivate false

	for _, url := range []string{
		rcv.URL, // http://127.0.0.1:port
		// A name resolving to loopback: the check must apply to the address
		// dialed, not to the URL, which is what defeats DNS rebinding.
		"http://localhost:" + port + "/hook",
		"http://[::1]:" + port + "/",
		"http://[::ffff:127.0.0.1]:" + port + "/",
	} {
		a := sender.Send(context.Background(), url, nil, []byte("{}"))
		if !errors.Is(a.Err, ErrForbiddenTarget) || a.StatusCode != 0 || a.Success() {
			t.Errorf("Send(%s) = %+v, want ErrForbiddenTarget", url, a)
		}
	}
	if n := rcv.hits.Load(); n != 0 {
		t.Errorf("receiver got %d requests, want 0", n)
	}

	// Same server, private targets allowed: reachable, proving the refusal
	// above came from the address check.
	if a := loopbackSender(SenderConfig{}).Send(context.Background(), "http://localhost:"+port+"/hook", nil, []byte("{}")); !a.Success() {
		t.Errorf("Send with AllowPrivate = %+v, want success", a)
	}
}

func TestSendRejectsMalformedURL(t *testing.T) {
	rcv := newReceiver(t, func(http.ResponseWriter, *http.Request) {})
	for _, url := range []string{
		"ftp://127.0.0.1/",
		strings.Replace(rcv.URL, "http://", "http://user:pw@", 1),
		"not a url",
	} {
		a := loopbackSender(SenderConfig{}).Send(context.Background(), url, nil, []byte("{}"))
		if !errors.Is(a.Err, ErrInvalidURL) || a.StatusCode != 0 {
			t.Errorf("Send(%q) = %+v, want ErrInvalidURL", url, a)
		}
	}
	if n := rcv.hits.Load(); n != 0 {
		t.Errorf("receiver got %d requests, want 0", n)
	}
}

func TestNewSenderDefaultsAndTransport(t *testing.T) {
	s := NewSender(SenderConfig{})
	if s.cfg.Timeout != 10*time.Second || s.cfg.MaxResponseBytes != 4096 || s.cfg.UserAgent != "SalesOS-Webhooks/1" {
		t.Errorf("defaults = %+v", s.cfg)
	}
	tr, ok := s.client.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is %T, want *http.Transport", s.client.Transport)
	}
	// Environment proxies would dial an address the SSRF check never saw.
	if tr.Proxy != nil {
		t.Error("Transport.Proxy is set; environment proxies must not be used")
	}
}

func TestAttemptSuccess(t *testing.T) {
	for _, tt := range []struct {
		a    Attempt
		want bool
	}{
		{Attempt{StatusCode: 200}, true},
		{Attempt{StatusCode: 204}, true},
		{Attempt{StatusCode: 299}, true},
		{Attempt{StatusCode: 199}, false},
		{Attempt{StatusCode: 300}, false},
		{Attempt{StatusCode: 302}, false},
		{Attempt{StatusCode: 404}, false},
		{Attempt{StatusCode: 500}, false},
		{Attempt{StatusCode: 0, Err: errors.New("boom")}, false},
		{Attempt{StatusCode: 200, Err: errors.New("boom")}, false},
	} {
		if got := tt.a.Success(); got != tt.want {
			t.Errorf("%+v.Success() = %v, want %v", tt.a, got, tt.want)
		}
	}
}
