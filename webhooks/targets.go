package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrForbiddenTarget is wrapped by every error that refuses a webhook target
// because of where it points (a non-public address), as opposed to how the URL
// is written.
var ErrForbiddenTarget = errors.New("webhook target not allowed")

// ErrInvalidURL is wrapped by every error about a malformed webhook URL.
var ErrInvalidURL = errors.New("invalid webhook URL")

const (
	// MaxURLLength bounds stored URLs; longer ones are almost certainly
	// abuse or a mistake, and the limit keeps rows and logs small.
	MaxURLLength = 2048

	// defaultResolveTimeout caps name resolution in ValidateURL when the
	// caller's context has no deadline, so a black-holed DNS server cannot
	// hang a request handler.
	defaultResolveTimeout = 5 * time.Second
)

// ValidateURL checks a webhook URL when it is saved: absolute http or https
// only, with a host, no userinfo, no fragment, at most MaxURLLength bytes.
// Unless allowPrivate, a literal IP must be public and a hostname must resolve
// (via resolver, net.DefaultResolver if nil, bounded by ctx) only to public
// addresses. Malformed URLs yield errors wrapping ErrInvalidURL, non-public
// targets errors wrapping ErrForbiddenTarget; both carry a human-readable
// reason.
//
// This check alone does not stop DNS rebinding (the name can resolve
// differently at delivery time); Sender re-checks the address actually dialed.
func ValidateURL(ctx context.Context, raw string, allowPrivate bool, resolver *net.Resolver) error {
	u, err := parseTargetURL(raw)
	if err != nil {
		return err
	}
	if allowPrivate {
		return nil
	}

	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if reason := nonPublicReason(ip); reason != "" {
			return fmt.Errorf("%w: %s is %s", ErrForbiddenTarget, ip, reason)
		}
		return nil
	}

	if resolver == nil {
		resolver = net.DefaultResolver
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultResolveTimeout)
		defer cancel()
	}
	addrs, err := resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		// An address we cannot see cannot be shown to be public.
		return lookupError(host, err)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%w: host %q has no addresses", ErrForbiddenTarget, host)
	}
	// Every address must be public: the dialer may pick any of them, and an
	// attacker controls which one comes first.
	for _, ip := range addrs {
		if reason := nonPublicReason(ip); reason != "" {
			return fmt.Errorf("%w: host %q resolves to %s, which is %s", ErrForbiddenTarget, host, ip.Unmap(), reason)
		}
	}
	return nil
}

// lookupError reports a failed name lookup. Its message goes to API
// clients, so it says what happened in words and leaves out what the
// resolver's error carries (our resolver's address, the dial error), which
// describes our network rather than the client's URL. The resolver's
// error is still wrapped, so callers can tell DNS failures apart.
func lookupError(host string, err error) error {
	why := "the lookup failed"
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.Canceled):
		why = "the lookup was cancelled"
	case errors.Is(err, context.DeadlineExceeded):
		why = "the lookup timed out"
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		why = "no such host"
	case errors.As(err, &dnsErr) && dnsErr.IsTimeout:
		why = "the lookup timed out"
	}
	return &targetError{
		msg:   fmt.Sprintf("%v: host %q could not be resolved: %s", ErrForbiddenTarget, host, why),
		cause: err,
	}
}

// targetError is an ErrForbiddenTarget with a message of its own.
type targetError struct {
	msg   string
	cause error
}

func (e *targetError) Error() string   { return e.msg }
func (e *targetError) Unwrap() []error { return []error{ErrForbiddenTarget, e.cause} }

// parseTargetURL performs the syntactic part of ValidateURL. Sender runs it
// too, so a URL that bypassed validation (an old row, a test hook) still
// cannot smuggle credentials or an odd scheme into a delivery.
func parseTargetURL(raw string) (*url.URL, error) {
	if len(raw) > MaxURLLength {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidURL, MaxURLLength)
	}
	// url.Parse lets raw bytes that are not UTF-8 through; the URL is
	// stored as text, and no database we support can store them.
	if !utf8.ValidString(raw) {
		return nil, fmt.Errorf("%w: not valid UTF-8 (percent-encode other bytes)", ErrInvalidURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL; the inner error is the reason.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" { // url.Parse lower-cases the scheme
		if u.Scheme == "" {
			return nil, fmt.Errorf("%w: must be an absolute http or https URL", ErrInvalidURL)
		}
		return nil, fmt.Errorf("%w: scheme %q is not allowed, use http or https", ErrInvalidURL, u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%w: missing host", ErrInvalidURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: credentials in the URL are not allowed", ErrInvalidURL)
	}
	// Checking the raw string also catches an empty fragment ("…/hook#"),
	// which url.URL does not record; '#' cannot appear unescaped elsewhere.
	if strings.Contains(raw, "#") {
		return nil, fmt.Errorf("%w: fragments are not allowed", ErrInvalidURL)
	}
	if p := u.Port(); p != "" {
		// url.Parse only checks that the port is digits.
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w: port %q is out of range", ErrInvalidURL, p)
		}
	}
	host := u.Hostname()
	_, ipErr := netip.ParseAddr(host)
	if ipErr != nil && strings.Contains(host, ":") {
		return nil, fmt.Errorf("%w: host %q is not a valid IPv6 address", ErrInvalidURL, host)
	}
	if ipErr != nil && endsInNumber(host) {
		// Hosts like "2130706433", "0x7f.1" or "127.1" are IPv4 addresses
		// to browsers and to libc's inet_aton, but not to netip. Refuse
		// them rather than guess which interpretation a resolver applies.
		return nil, fmt.Errorf("%w: host %q is not a valid hostname or IP address", ErrInvalidURL, host)
	}
	if strings.Contains(host, "%") {
		// Zoned IPv6 literals ("fe80::1%eth0") name a local interface.
		return nil, fmt.Errorf("%w: IPv6 zones are not allowed", ErrInvalidURL)
	}
	return u, nil
}

// endsInNumber reports whether the last DNS label is numeric (decimal or
// 0x-hex), which the WHATWG URL standard treats as an IPv4 address and which
// no real top-level domain is.
func endsInNumber(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(strings.ToLower(last), "0x"); ok {
		return strings.Trim(rest, "0123456789abcdef") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}

// IsPublicIP reports whether ip is a globally routable unicast address that a
// webhook may be delivered to. It is false for loopback, private (RFC 1918,
// fc00::/7), link-local (including 169.254.169.254 cloud metadata and
// fe80::/10), CGNAT, multicast, unspecified, broadcast, documentation,
// benchmarking and reserved ranges, and for IPv4 addresses of those kinds
// embedded in IPv6 (IPv4-mapped, NAT64 64:ff9b::/96, 6to4).
func IsPublicIP(ip netip.Addr) bool {
	return nonPublicReason(ip) == ""
}

type specialPrefix struct {
	prefix netip.Prefix
	reason string
}

func mustPrefixes(pairs ...string) []specialPrefix {
	out := make([]specialPrefix, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, specialPrefix{netip.MustParsePrefix(pairs[i]), pairs[i+1]})
	}
	return out
}

// Blocklists after the IANA special-purpose address registries, restricted to
// blocks that are not globally reachable unicast.
var (
	nonPublicV4 = mustPrefixes(
		"0.0.0.0/8", "an unspecified or \"this network\" address",
		"10.0.0.0/8", "a private address",
		"100.64.0.0/10", "a carrier-grade NAT address",
		"127.0.0.0/8", "a loopback address",
		"169.254.0.0/16", "a link-local address",
		"172.16.0.0/12", "a private address",
		"192.0.0.0/24", "an IETF protocol assignment address",
		"192.0.2.0/24", "a documentation address",
		"192.88.99.0/24", "a deprecated 6to4 relay address",
		"192.168.0.0/16", "a private address",
		"198.18.0.0/15", "a benchmarking address",
		"198.51.100.0/24", "a documentation address",
		"203.0.113.0/24", "a documentation address",
		"224.0.0.0/4", "a multicast address",
		"255.255.255.255/32", "the broadcast address", // before 240/4 for the better message
		"240.0.0.0/4", "a reserved address",
	)
	nonPublicV6 = mustPrefixes(
		"2001::/32", "a Teredo tunnelling address",
		"2001:2::/48", "a benchmarking address",
		"2001:10::/28", "a deprecated ORCHID address",
		"2001:db8::/32", "a documentation address",
		"3fff::/20", "a documentation address",
	)
	// Only 2000::/3 is allocated for global unicast; everything else in
	// IPv6 (::1, ::, fc00::/7, fe80::/10, ff00::/8, 64:ff9b:1::/48, …) is
	// special. NAT64 and 6to4 are handled before this allowlist applies.
	globalUnicastV6 = netip.MustParsePrefix("2000::/3")
	nat64           = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour       = netip.MustParsePrefix("2002::/16")
)

// nonPublicReason returns "" for a public address, otherwise a phrase such as
// "a loopback address" for error messages.
func nonPublicReason(ip netip.Addr) string {
	if !ip.IsValid() {
		return "not a valid address"
	}
	if ip.Zone() != "" {
		// Zones only exist for scoped (link-local style) destinations, and
		// netip.Prefix.Contains never matches zoned addresses.
		return "a scoped address"
	}
	// ::ffff:a.b.c.d is dialed as a.b.c.d by the kernel.
	ip = ip.Unmap()
	if ip.Is4() {
		return nonPublicReasonV4(ip)
	}

	switch {
	case ip.IsUnspecified():
		return "an unspecified address"
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsMulticast():
		return "a multicast address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address"
	case ip.IsPrivate():
		return "a private address"
	case nat64.Contains(ip):
		// A NAT64 gateway forwards to the embedded IPv4 address, which is
		// what has to be public.
		b := ip.As16()
		if r := nonPublicReasonV4(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
			return "a NAT64 address of " + r
		}
		return ""
	case sixToFour.Contains(ip):
		b := ip.As16()
		if r := nonPublicReasonV4(netip.AddrFrom4([4]byte(b[2:6]))); r != "" {
			return "a 6to4 address of " + r
		}
		return ""
	case !globalUnicastV6.Contains(ip):
		return "a reserved address"
	}
	for _, p := range nonPublicV6 {
		if p.prefix.Contains(ip) {
			return p.reason
		}
	}
	return ""
}

func nonPublicReasonV4(ip netip.Addr) string {
	for _, p := range nonPublicV4 {
		if p.prefix.Contains(ip) {
			return p.reason
		}
	}
	return ""
}
