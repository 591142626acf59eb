package webhooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names defined by the Standard Webhooks specification.
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

const (
	// secretPrefix marks a Standard Webhooks signing secret, so that a
	// secret pasted into the wrong field is recognisable.
	secretPrefix = "whsec_"
	// secretBytes is the minimum key size the spec recommends (24–64 bytes).
	secretBytes = 24
	// signatureVersion is the only scheme the spec defines for symmetric keys.
	signatureVersion = "v1"
)

// ErrInvalidSecret is returned when a secret is not "whsec_" followed by a
// non-empty standard base64 key.
var ErrInvalidSecret = errors.New("invalid webhook secret")

// NewSecret returns a fresh signing secret: "whsec_" + base64(24 random bytes).
func NewSecret() (string, error) {
	key := make([]byte, secretBytes)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generating webhook secret: %w", err)
	}
	return secretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// Sign returns the webhook-signature header value
// "v1,<base64 HMAC-SHA256(key, "<msgID>.<unix ts>.<body>")>", where key is the
// base64-decoded part of secret after "whsec_".
func Sign(secret, msgID string, ts time.Time, body []byte) (string, error) {
	key, err := decodeSecret(secret)
	if err != nil {
		return "", err
	}
	if err := validateMsgID(msgID); err != nil {
		return "", err
	}
	if ts.IsZero() {
		// A zero time signs as year 1 and every receiver would reject it as
		// too old; failing here points at the caller's bug instead.
		return "", errors.New("webhook timestamp is zero")
	}
	return signatureVersion + "," + sign(key, msgID, ts, body), nil
}

// Headers returns the webhook-id, webhook-timestamp and webhook-signature
// headers for a message. The same msgID must be reused across retries of one
// delivery so that receivers can de-duplicate.
func Headers(secret, msgID string, ts time.Time, body []byte) (http.Header, error) {
	sig, err := Sign(secret, msgID, ts, body)
	if err != nil {
		return nil, err
	}
	// Set canonicalises the names ("Webhook-Id"); that is what Header.Get
	// expects, and HTTP header names are case-insensitive on the wire.
	h := make(http.Header, 3)
	h.Set(HeaderWebhookID, msgID)
	h.Set(HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderWebhookSignature, sig)
	return h, nil
}

func sign(key []byte, msgID string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	// hash.Hash.Write never returns an error.
	mac.Write([]byte(msgID))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// decodeSecret insists on the "whsec_" prefix even though some verifier
// libraries treat it as optional: every secret we store was produced by
// NewSecret, so a missing prefix means data corruption or a mix-up, and
// signing with the wrong bytes would fail silently on the receiver's side.
func decodeSecret(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: missing %q prefix", ErrInvalidSecret, secretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: key is not valid base64", ErrInvalidSecret)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: empty key", ErrInvalidSecret)
	}
	return key, nil
}

// validateMsgID rejects IDs that would be dropped or mangled as an HTTP header
// value; receivers need the exact bytes to recompute the signature.
func validateMsgID(id string) error {
	if id == "" {
		return errors.New("webhook message id is empty")
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("webhook message id %q contains whitespace or control characters", id)
		}
	}
	return nil
}
