package webhooks

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const testBody = `{"type":"lead.created","timestamp":"2026-03-15T14:30:00Z","data":{"id":"7f9c","name":"Ada"}}`

func mustSecret(t *testing.T) string {
	t.Helper()
	secret, err := NewSecret()
	if err != nil {
		t.Fatalf("NewSecret: %v", err)
	}
	return secret
}

// verifier is the independent reference implementation; our signatures are
// only correct if it accepts them.
func verifier(t *testing.T, secret string) *standardwebhooks.Webhook {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("standardwebhooks.NewWebhook: %v", err)
	}
	return wh
}

func TestNewSecretFormat(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		secret := mustSecret(t)
		enc, ok := strings.CutPrefix(secret, "whsec_")
		if !ok {
			t.Fatalf("secret %q lacks whsec_ prefix", secret)
		}
		key, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			t.Fatalf("secret %q: key is not standard base64: %v", secret, err)
		}
		if len(key) != 24 {
			t.Fatalf("secret %q: key has %d bytes, want 24", secret, len(key))
		}
		if seen[secret] {
			t.Fatalf("NewSecret repeated %q", secret)
		}
		seen[secret] = true
	}
}

func TestHeadersVerifyWithStandardWebhooks(t *testing.T) {
	bodies := map[string][]byte{
		"json":  []byte(testBody),
		"empty": {},
		"utf8":  []byte(`{"name":"Zoë ☃ 東京"}`),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			secret := mustSecret(t)
			// Verify enforces a ±5 minute tolerance, so sign "now".
			h, err := Headers(secret, "msg_2mYvGq1s", time.Now(), body)
			if err != nil {
				t.Fatalf("Headers: %v", err)
			}
			if err := verifier(t, secret).Verify(body, h); err != nil {
				t.Fatalf("standardwebhooks rejected our signature: %v (headers %v)", err, h)
			}
		})
	}
}

func TestHeadersValues(t *testing.T) {
	secret := mustSecret(t)
	ts := time.Unix(1_773_585_000, 987_000_000) // sub-second part must be dropped
	h, err := Headers(secret, "msg_1", ts, []byte(testBody))
	if err != nil {
		t.Fatalf("Headers: %v", err)
	}
	if got := h.Get("webhook-id"); got != "msg_1" {
		t.Errorf("webhook-id = %q, want msg_1", got)
	}
	if got := h.Get("webhook-timestamp"); got != "1773585000" {
		t.Errorf("webhook-timestamp = %q, want 1773585000", got)
	}
	sig, err := Sign(secret, "msg_1", ts, []byte(testBody))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if got := h.Get("webhook-signature"); got != sig {
		t.Errorf("webhook-signature = %q, want Sign's %q", got, sig)
	}
	if len(h) != 3 {
		t.Errorf("got %d headers, want exactly 3: %v", len(h), h)
	}
	// Cross-check against the reference signer for an arbitrary past time,
	// which Verify's tolerance would not allow.
	want, err := verifier(t, secret).Sign("msg_1", ts, []byte(testBody))
	if err != nil {
		t.Fatalf("reference Sign: %v", err)
	}
	if sig != want {
		t.Errorf("Sign = %q, reference implementation = %q", sig, want)
	}
	if err := verifier(t, secret).VerifyIgnoringTimestamp([]byte(testBody), h); err != nil {
		t.Errorf("reference VerifyIgnoringTimestamp: %v", err)
	}
}

// TestSignKnownVector pins the exact output so an accidental change in the
// signed content (separator, timestamp unit, encoding) cannot go unnoticed
// even if both sides of a round trip changed together. The vector is the one
// published with the Standard Webhooks libraries' test suites.
func TestSignKnownVector(t *testing.T) {
	const (
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		msgID  = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		body   = `{"test": 2432232314}`
		want   = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	got, err := Sign(secret, msgID, time.Unix(1614265330, 0), []byte(body))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

func TestVerifyFailsOnTamperingAndWrongSecret(t *testing.T) {
	secret := mustSecret(t)
	now := time.Now()
	h, err := Headers(secret, "msg_1", now, []byte(testBody))
	if err != nil {
		t.Fatalf("Headers: %v", err)
	}

	t.Run("tampered body", func(t *testing.T) {
		tampered := []byte(strings.Replace(testBody, "Ada", "Eve", 1))
		err := verifier(t, secret).Verify(tampered, h)
		if !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
			t.Fatalf("Verify(tampered) = %v, want ErrNoMatchingSignature", err)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		err := verifier(t, mustSecret(t)).Verify([]byte(testBody), h)
		if !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
			t.Fatalf("Verify(other secret) = %v, want ErrNoMatchingSignature", err)
		}
	})
	t.Run("different message id", func(t *testing.T) {
		h2 := h.Clone()
		h2.Set("webhook-id", "msg_2")
		err := verifier(t, secret).Verify([]byte(testBody), h2)
		if !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
			t.Fatalf("Verify(other id) = %v, want ErrNoMatchingSignature", err)
		}
	})
	t.Run("different timestamp", func(t *testing.T) {
		h2 := h.Clone()
		h2.Set("webhook-timestamp", strconv.FormatInt(now.Unix()+1, 10))
		err := verifier(t, secret).Verify([]byte(testBody), h2)
		if !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
			t.Fatalf("Verify(other timestamp) = %v, want ErrNoMatchingSignature", err)
		}
	})
}

func TestSignRejectsMalformedInput(t *testing.T) {
	valid := mustSecret(t)
	now := time.Now()
	tests := []struct {
		name   string
		secret string
		msgID  string
		ts     time.Time
		secErr bool // must wrap ErrInvalidSecret
	}{
		{name: "no prefix", secret: strings.TrimPrefix(valid, "whsec_"), msgID: "m", ts: now, secErr: true},
		{name: "wrong prefix", secret: "whsek_" + strings.TrimPrefix(valid, "whsec_"), msgID: "m", ts: now, secErr: true},
		{name: "not base64", secret: "whsec_not*base64!", msgID: "m", ts: now, secErr: true},
		{name: "url-safe base64", secret: "whsec_-_-_", msgID: "m", ts: now, secErr: true},
		{name: "empty key", secret: "whsec_", msgID: "m", ts: now, secErr: true},
		{name: "empty", secret: "", msgID: "m", ts: now, secErr: true},
		{name: "empty message id", secret: valid, msgID: "", ts: now},
		{name: "message id with newline", secret: valid, msgID: "m\r\nX-Evil: 1", ts: now},
		{name: "message id with space", secret: valid, msgID: "m 1", ts: now},
		{name: "zero timestamp", secret: valid, msgID: "m", ts: time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := Sign(tt.secret, tt.msgID, tt.ts, []byte(testBody))
			if err == nil {
				t.Fatalf("Sign succeeded with %q, want error", sig)
			}
			if tt.secErr && !errors.Is(err, ErrInvalidSecret) {
				t.Errorf("Sign error %v does not wrap ErrInvalidSecret", err)
			}
			if h, err := Headers(tt.secret, tt.msgID, tt.ts, []byte(testBody)); err == nil || h != nil {
				t.Errorf("Headers = %v, %v; want nil, error", h, err)
			}
		})
	}
}
