package webhooks

// Run with .ci/fuzz, or: go test -run '^$' -fuzz '^FuzzValidateURL$' -fuzztime 10s ./webhooks

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzValidateURL: whatever a client sends as a webhook URL, validation
// never panics and never touches the network here (the resolver knows one
// public name and fails every other lookup at once). A refusal wraps
// exactly one of ErrInvalidURL and ErrForbiddenTarget; an accepted URL is
// absolute http(s) with a host, no credentials or fragment, within
// MaxURLLength, storable text (no NUL, valid UTF-8) and, unless private
// targets are allowed, a literal IP in it is public.
func FuzzValidateURL(f *testing.F) {
	for _, s := range []string{
		"https://hooks.example.com/salesos", "http://93.184.216.34:8080/h?x=1", "https://[2606:2800:220:1::1]/",
		"http://127.0.0.1/", "http://localhost/", "http://0x7f.1/", "http://2130706433/", "http://[fe80::1%25eth0]/",
		"https://user:pw@hooks.example.com/", "https://hooks.example.com/#frag", "ftp://x/", "javascript:alert(1)",
		"//hooks.example.com/", "https://hooks.example.com:0/", "https://hooks.example.com:65536/",
		"https://hooks.example.com/\x00", "https://hooks.example.com/\xff", "https://h\xc3\xa9.example.com/", "http://[::ffff:10.0.0.1]/",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	resolver := &net.Resolver{
		PreferGo: true,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("no network while fuzzing")
		},
	}
	f.Fuzz(func(t *testing.T, raw string, allowPrivate bool) {
		err := ValidateURL(context.Background(), raw, allowPrivate, resolver)
		if err != nil {
			invalid, forbidden := errors.Is(err, ErrInvalidURL), errors.Is(err, ErrForbiddenTarget)
			if invalid == forbidden {
				t.Fatalf("ValidateURL(%q) = %v: wraps ErrInvalidURL %v, ErrForbiddenTarget %v; want exactly one", raw, err, invalid, forbidden)
			}
			if !utf8.ValidString(err.Error()) || strings.IndexByte(err.Error(), 0) >= 0 {
				t.Fatalf("message %q is not storable text", err.Error())
			}
			return
		}
		if len(raw) > MaxURLLength || !utf8.ValidString(raw) || strings.IndexByte(raw, 0) >= 0 || strings.Contains(raw, "#") {
			t.Fatalf("accepted %q", raw)
		}
		u, perr := url.Parse(raw)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil {
			t.Fatalf("accepted %q (%v, %+v)", raw, perr, u)
		}
		if allowPrivate {
			return
		}
		ip, ipErr := netip.ParseAddr(u.Hostname())
		if ipErr != nil {
			t.Fatalf("accepted %q with a name that cannot have resolved", raw)
		}
		if !IsPublicIP(ip) {
			t.Fatalf("accepted %q: %s is not public", raw, ip)
		}
	})
}
