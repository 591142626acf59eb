package webhooks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

const (
	defaultTimeout          = 10 * time.Second
	defaultMaxResponseBytes = 4096
	defaultUserAgent        = "SalesOS-Webhooks/1"

	// maxDrainBytes is how much of an unread response body we are willing to
	// discard so the keep-alive connection can be reused; beyond that, closing
	// the connection is cheaper than reading a hostile or huge body.
	maxDrainBytes = 64 << 10
	// maxResponseHeaderBytes is far below net/http's 1 MB default: we only
	// need the status line, and receivers are untrusted.
	maxResponseHeaderBytes = 64 << 10
)

// SenderConfig configures a Sender. Zero values select the defaults.
type SenderConfig struct {
	// Timeout bounds one attempt: connecting, sending and reading the
	// response excerpt. Default 10s.
	Timeout time.Duration
	// MaxResponseBytes caps the response excerpt kept for diagnostics.
	// Default 4096.
	MaxResponseBytes int64
	// AllowPrivate permits loopback, private and other non-public targets
	// (SALESOS_WEBHOOK_ALLOW_PRIVATE_TARGETS); meant for development and tests.
	AllowPrivate bool
	// UserAgent is sent with every delivery. Default "SalesOS-Webhooks/1".
	UserAgent string
}

// Sender performs webhook delivery attempts over HTTP. It is safe for
// concurrent use and should be shared so connections are pooled.
type Sender struct {
	cfg    SenderConfig
	client *http.Client
}

// Attempt is the outcome of one delivery attempt.
type Attempt struct {
	// StatusCode is the HTTP status received, 0 when no response came.
	StatusCode int
	// Duration is the wall time of the attempt, including reading the excerpt.
	Duration time.Duration
	// ResponseExcerpt is at most MaxResponseBytes bytes of the start of the
	// response body, as valid UTF-8 without NUL bytes so it can be stored in
	// a text column as is.
	ResponseExcerpt string
	// Err is the transport error (refused target, DNS, connect, TLS, timeout);
	// nil whenever a response was received, whatever its status.
	Err error
}

// Success reports whether the receiver accepted the delivery: a 2xx status.
// Redirects count as failures because they are not followed.
func (a Attempt) Success() bool {
	return a.Err == nil && a.StatusCode >= 200 && a.StatusCode <= 299
}

// NewSender returns a Sender with its own connection pool.
func NewSender(cfg SenderConfig) *Sender {
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = defaultMaxResponseBytes
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = defaultUserAgent
	}

	dialer := &net.Dialer{
		Timeout:   cfg.Timeout,
		KeepAlive: 30 * time.Second,
	}
	if !cfg.AllowPrivate {
		// Checking here, on the socket about to connect, is what defeats DNS
		// rebinding: it sees the address actually dialed, after resolution,
		// for every address the dialer tries, including literal IPs.
		dialer.ControlContext = refuseNonPublic
	}

	transport := &http.Transport{
		// Environment proxies would connect to an address we never checked
		// (and could leak deliveries to a proxy the operator set up for
		// something else).
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true, // a custom DialContext disables it otherwise
		TLSHandshakeTimeout:    cfg.Timeout,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    32, // fan-out sends many deliveries to few hosts
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
	}

	return &Sender{
		cfg: cfg,
		client: &http.Client{
			Transport: transport,
			// A redirect could point anywhere, including at a target that
			// would have been refused when the webhook was saved; receivers
			// must answer 2xx themselves.
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

// refuseNonPublic is a net.Dialer.ControlContext hook; address is the
// "ip:port" about to be connected to.
func refuseNonPublic(_ context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot check dial address %q on %s: %v", ErrForbiddenTarget, address, network, err)
	}
	if reason := nonPublicReason(ap.Addr()); reason != "" {
		return fmt.Errorf("%w: %s is %s", ErrForbiddenTarget, ap.Addr().Unmap(), reason)
	}
	return nil
}

// Send POSTs body as application/json to url with the given extra headers
// (typically from Headers) and reports the outcome. It never follows
// redirects and never returns a nil-error Attempt without a status code.
// Content-Type and User-Agent are always set by the Sender.
func (s *Sender) Send(ctx context.Context, url string, headers http.Header, body []byte) Attempt {
	start := time.Now()
	attempt := func(status int, excerpt string, err error) Attempt {
		return Attempt{StatusCode: status, Duration: time.Since(start), ResponseExcerpt: excerpt, Err: err}
	}

	if _, err := parseTargetURL(url); err != nil {
		return attempt(0, "", err)
	}

	// The deadline covers reading the excerpt too, so a receiver trickling
	// its body cannot hold a worker beyond Timeout.
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return attempt(0, "", err)
	}
	for k, vs := range headers {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.cfg.UserAgent)

	resp, err := s.client.Do(req)
	if err != nil {
		return attempt(0, "", err)
	}
	defer resp.Body.Close()

	// A read error after the status line does not change the outcome: the
	// receiver has answered, and the status is what it answered with.
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, s.cfg.MaxResponseBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrainBytes))

	return attempt(resp.StatusCode, sanitizeExcerpt(raw, int(s.cfg.MaxResponseBytes)), nil)
}

// sanitizeExcerpt makes b storable as text within limit bytes: a rune split
// by the read limit is dropped, other invalid UTF-8 and NUL bytes (which
// PostgreSQL text rejects) become U+FFFD, and because replacements can grow
// the string it is cut back to at most limit bytes on a rune boundary.
func sanitizeExcerpt(b []byte, limit int) string {
	if len(b) >= limit {
		// The body was probably cut by the read limit: drop a trailing
		// partial rune rather than show it as a replacement character.
		for i := 1; i < utf8.UTFMax && i <= len(b); i++ {
			if utf8.RuneStart(b[len(b)-i]) {
				if !utf8.FullRune(b[len(b)-i:]) {
					b = b[:len(b)-i]
				}
				break
			}
		}
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
