package webhooks

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestValidateURL(t *testing.T) {
	// Names under example.com resolve through an in-process fake DNS server,
	// so the tests need no network and cover what public names would do.
	resolver := fakeResolver(t, map[string][]string{
		"hooks.example.com":   {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"},
		"rebind.example.com":  {"93.184.216.34", "127.0.0.1"},
		"private.example.com": {"10.1.2.3"},
		"meta.example.com":    {"169.254.169.254"},
		"v6ula.example.com":   {"fd00::1"},
		"mapped.example.com":  {"::ffff:192.168.0.1"},
		"nat64.example.com":   {"64:ff9b::a9fe:a9fe"},
	})

	tests := []struct {
		name         string
		url          string
		allowPrivate bool
		want         error  // nil, ErrInvalidURL or ErrForbiddenTarget
		reason       string // substring the message must contain
	}{
		// Syntax, checked regardless of allowPrivate.
		{name: "ftp", url: "ftp://hooks.example.com/hook", want: ErrInvalidURL, reason: `scheme "ftp"`},
		{name: "ftp even when private allowed", url: "ftp://127.0.0.1/", allowPrivate: true, want: ErrInvalidURL},
		{name: "javascript", url: "javascript:alert(1)", want: ErrInvalidURL},
		{name: "relative", url: "/hook", want: ErrInvalidURL, reason: "absolute"},
		{name: "scheme-relative", url: "//hooks.example.com/hook", want: ErrInvalidURL},
		{name: "empty", url: "", want: ErrInvalidURL},
		{name: "no host", url: "https:///hook", want: ErrInvalidURL, reason: "missing host"},
		{name: "port only", url: "https://:8443/hook", want: ErrInvalidURL, reason: "missing host"},
		{name: "opaque", url: "https:hooks.example.com", want: ErrInvalidURL, reason: "missing host"},
		{name: "userinfo", url: "https://user:pass@hooks.example.com/hook", want: ErrInvalidURL, reason: "credentials"},
		{name: "user only", url: "https://user@hooks.example.com/hook", want: ErrInvalidURL, reason: "credentials"},
		{name: "fragment", url: "https://hooks.example.com/hook#x", want: ErrInvalidURL, reason: "fragment"},
		{name: "empty fragment", url: "https://hooks.example.com/hook#", want: ErrInvalidURL, reason: "fragment"},
		{name: "too long", url: "https://hooks.example.com/" + strings.Repeat("a", 2048), want: ErrInvalidURL, reason: "2048"},
		{name: "port 0", url: "https://hooks.example.com:0/", want: ErrInvalidURL, reason: "port"},
		{name: "port too big", url: "https://hooks.example.com:65536/", want: ErrInvalidURL, reason: "port"},
		{name: "control char", url: "https://hooks.example.com/\nhook", want: ErrInvalidURL},
		{name: "decimal IPv4", url: "http://2130706433/", want: ErrInvalidURL, reason: "not a valid hostname"},
		{name: "short IPv4", url: "http://127.1/", want: ErrInvalidURL, reason: "not a valid hostname"},
		{name: "hex IPv4", url: "http://0x7f.0.0.1/", want: ErrInvalidURL, reason: "not a valid hostname"},
		{name: "octal-looking IPv4", url: "http://0177.0.0.1/", want: ErrInvalidURL},
		{name: "zoned IPv6", url: "http://[fe80::1%25eth0]/", allowPrivate: true, want: ErrInvalidURL, reason: "zone"},

		// Literal addresses.
		{name: "private 10/8", url: "http://10.0.0.1/", want: ErrForbiddenTarget, reason: "private"},
		{name: "private 192.168", url: "http://192.168.1.10:8080/hook", want: ErrForbiddenTarget, reason: "private"},
		{name: "cloud metadata", url: "http://169.254.169.254/latest/meta-data", want: ErrForbiddenTarget, reason: "link-local"},
		{name: "IPv6 loopback", url: "http://[::1]/", want: ErrForbiddenTarget, reason: "loopback"},
		{name: "IPv4-mapped loopback", url: "http://[::ffff:127.0.0.1]/", want: ErrForbiddenTarget, reason: "loopback"},
		{name: "CGNAT", url: "http://100.64.0.1", want: ErrForbiddenTarget, reason: "carrier-grade NAT"},
		{name: "unspecified", url: "http://0.0.0.0:8080/", want: ErrForbiddenTarget},
		{name: "IPv6 link-local", url: "http://[fe80::1]/", want: ErrForbiddenTarget, reason: "link-local"},
		{name: "public IPv4", url: "https://93.184.216.34/hook"},
		{name: "public IPv4 upper-case scheme", url: "HTTPS://93.184.216.34/hook"},
		{name: "public IPv6", url: "https://[2606:2800:220:1:248:1893:25c8:1946]:8443/hook?x=1"},
		{name: "max length", url: "https://93.184.216.34/" + strings.Repeat("a", 2048-len("https://93.184.216.34/"))},

		// Host names.
		{name: "localhost", url: "http://localhost", want: ErrForbiddenTarget, reason: "loopback"},
		{name: "localhost with port", url: "http://localhost:3000/hook", want: ErrForbiddenTarget, reason: "loopback"},
		{name: "public name", url: "https://hooks.example.com/hook"},
		{name: "public name, trailing dot", url: "https://hooks.example.com./hook"},
		{name: "one of several addresses private", url: "https://rebind.example.com/", want: ErrForbiddenTarget, reason: "127.0.0.1"},
		{name: "name to private", url: "https://private.example.com/", want: ErrForbiddenTarget, reason: "10.1.2.3"},
		{name: "name to metadata", url: "https://meta.example.com/", want: ErrForbiddenTarget, reason: "link-local"},
		{name: "name to ULA", url: "https://v6ula.example.com/", want: ErrForbiddenTarget, reason: "private"},
		{name: "name to mapped private", url: "https://mapped.example.com/", want: ErrForbiddenTarget, reason: "192.168.0.1"},
		{name: "name to NAT64 metadata", url: "https://nat64.example.com/", want: ErrForbiddenTarget, reason: "NAT64"},
		{name: "unknown name", url: "https://nxdomain.example.com/", want: ErrForbiddenTarget, reason: "could not be resolved"},

		// allowPrivate skips the address checks only.
		{name: "allow loopback", url: "http://127.0.0.1:8080/hook", allowPrivate: true},
		{name: "allow localhost", url: "http://localhost:3000/hook", allowPrivate: true},
		{name: "allow IPv6 loopback", url: "http://[::1]/", allowPrivate: true},
		{name: "allow private", url: "http://10.0.0.1/", allowPrivate: true},
		{name: "allow unknown name", url: "http://receiver.internal/", allowPrivate: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := resolver
			if strings.Contains(tt.url, "localhost") {
				r = nil // exercise net.DefaultResolver (/etc/hosts)
			}
			err := ValidateURL(context.Background(), tt.url, tt.allowPrivate, r)
			t.Logf("ValidateURL(%.60q) = %v", tt.url, err)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("ValidateURL(%q) = %v, want nil", tt.url, err)
			case tt.want == nil:
				return
			case !errors.Is(err, tt.want):
				t.Fatalf("ValidateURL(%q) = %v, want error wrapping %v", tt.url, err, tt.want)
			}
			other := ErrForbiddenTarget
			if tt.want == ErrForbiddenTarget {
				other = ErrInvalidURL
			}
			if errors.Is(err, other) {
				t.Errorf("ValidateURL(%q) = %v, also wraps %v", tt.url, err, other)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("ValidateURL(%q) = %q, want reason containing %q", tt.url, err, tt.reason)
			}
		})
	}
}

func TestValidateURLDNSErrorIsWrapped(t *testing.T) {
	err := ValidateURL(context.Background(), "https://nxdomain.example.com/", false, fakeResolver(t, nil))
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("ValidateURL = %v, want a wrapped not-found *net.DNSError", err)
	}
}

func TestValidateURLHonoursContextDeadline(t *testing.T) {
	// A DNS server that never answers: only the context can end the lookup,
	// so this test would hang (and hit the test timeout) if it were ignored.
	hanging := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ValidateURL(ctx, "https://hooks.example.com/", false, hanging)
	if !errors.Is(err, ErrForbiddenTarget) {
		t.Fatalf("ValidateURL = %v, want ErrForbiddenTarget", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("ValidateURL = %v, want it to wrap context.Canceled", err)
	}
}

func TestIsPublicIP(t *testing.T) {
	// Non-public IPv4 addresses, including both ends of each range. Each is
	// also checked in its IPv4-mapped and NAT64 forms below.
	nonPublicV4 := []string{
		"0.0.0.0", "0.1.2.3", "0.255.255.255", // this network / unspecified
		"10.0.0.0", "10.1.2.3", "10.255.255.255", // RFC 1918
		"172.16.0.0", "172.20.1.1", "172.31.255.255", // RFC 1918
		"192.168.0.0", "192.168.1.1", "192.168.255.255", // RFC 1918
		"100.64.0.0", "100.100.100.100", "100.127.255.255", // CGNAT
		"127.0.0.1", "127.0.0.0", "127.255.255.255", // loopback
		"169.254.0.0", "169.254.169.254", "169.254.255.255", // link-local, cloud metadata
		"192.0.0.0", "192.0.0.8", "192.0.0.170", "192.0.0.255", // IETF protocol assignments
		"192.0.2.0", "192.0.2.1", "192.0.2.255", // TEST-NET-1
		"192.88.99.1",                                // 6to4 relay anycast
		"198.18.0.0", "198.18.5.5", "198.19.255.255", // benchmarking
		"198.51.100.0", "198.51.100.7", "198.51.100.255", // TEST-NET-2
		"203.0.113.0", "203.0.113.9", "203.0.113.255", // TEST-NET-3
		"224.0.0.0", "224.0.0.1", "239.255.255.250", // multicast
		"240.0.0.0", "250.1.2.3", "255.255.255.254", // reserved
		"255.255.255.255", // broadcast
	}
	publicV4 := []string{
		"8.8.8.8", "1.1.1.1", "93.184.216.34", "9.255.255.255", "11.0.0.0",
		"100.63.255.255", "100.128.0.0", // around CGNAT
		"126.255.255.255", "128.0.0.0", // around loopback
		"169.253.255.255", "169.255.0.0", // around link-local
		"172.15.255.255", "172.32.0.0", // around 172.16/12
		"192.0.1.255", "192.0.3.0", // around 192.0.0.0/24 and TEST-NET-1
		"192.167.255.255", "192.169.0.0", // around 192.168/16
		"198.17.255.255", "198.20.0.0", // around benchmarking
		"198.51.99.255", "198.51.101.0", "203.0.112.255", "203.0.114.0",
		"223.255.255.255", // last unicast before multicast
	}
	nonPublicV6 := []string{
		"::", "::1", // unspecified, loopback
		"fc00::", "fc00::1", "fd12:3456:789a::1", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", // ULA fc00::/7
		"fe80::", "fe80::1", "febf:ffff::1", // link-local fe80::/10
		"fec0::1",                        // deprecated site-local
		"ff00::", "ff02::1", "ff0e::101", // multicast
		"2001:db8::", "2001:db8::1", "2001:db8:ffff:ffff::1", // documentation
		"3fff::1",                        // documentation (RFC 9637)
		"2001::1", "2001:0:4136:e378::1", // Teredo
		"2001:2::1",                // benchmarking
		"2001:10::1",               // ORCHID
		"64:ff9b:1::1",             // local-use NAT64
		"100::1",                   // discard-only
		"::127.0.0.1", "::8.8.8.8", // deprecated IPv4-compatible
		"2002:7f00:1::1", "2002:a9fe:a9fe::1", // 6to4 of loopback, metadata
		"fe80::1%eth0", "2606:4700::1111%eth0", // zoned
	}
	publicV6 := []string{
		"2606:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001:800::200e",
		"2001:db7:ffff::1", "2001:db9::1", // around documentation
		"2002:808:808::1", // 6to4 of 8.8.8.8
		"2000::1", "3ffe::1",
	}

	check := func(s string, want bool) {
		t.Helper()
		ip := netip.MustParseAddr(s)
		if got := IsPublicIP(ip); got != want {
			t.Errorf("IsPublicIP(%s) = %v, want %v (reason %q)", s, got, want, nonPublicReason(ip))
		}
	}
	for _, s := range nonPublicV4 {
		check(s, false)
		check("::ffff:"+s, false)
		b := netip.MustParseAddr(s).As4()
		nat := netip.AddrFrom16([16]byte{0, 0x64, 0xff, 0x9b, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})
		check(nat.String(), false)
	}
	for _, s := range publicV4 {
		check(s, true)
		check("::ffff:"+s, true)
		b := netip.MustParseAddr(s).As4()
		nat := netip.AddrFrom16([16]byte{0, 0x64, 0xff, 0x9b, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})
		check(nat.String(), true)
	}
	for _, s := range nonPublicV6 {
		check(s, false)
	}
	for _, s := range publicV6 {
		check(s, true)
	}
	if IsPublicIP(netip.Addr{}) {
		t.Error("IsPublicIP(zero Addr) = true, want false")
	}
}

// fakeResolver returns a resolver backed by an in-process DNS server that
// answers A and AAAA queries from records (name without trailing dot →
// addresses) and NXDOMAIN for anything else. It talks DNS over net.Pipe, so no
// socket or network access is involved.
func fakeResolver(t *testing.T, records map[string][]string) *net.Resolver {
	t.Helper()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			client, server := net.Pipe()
			go serveFakeDNS(server, records)
			return client, nil
		},
	}
}

// serveFakeDNS answers length-prefixed DNS queries (DNS over a stream, which
// is what the Go resolver speaks on a non-packet connection) until EOF.
func serveFakeDNS(conn net.Conn, records map[string][]string) {
	defer conn.Close()
	for {
		var n uint16
		if err := binary.Read(conn, binary.BigEndian, &n); err != nil {
			return
		}
		q := make([]byte, n)
		if _, err := io.ReadFull(conn, q); err != nil {
			return
		}
		resp := fakeDNSResponse(q, records)
		if resp == nil {
			return
		}
		if err := binary.Write(conn, binary.BigEndian, uint16(len(resp))); err != nil {
			return
		}
		if _, err := conn.Write(resp); err != nil {
			return
		}
	}
}

func fakeDNSResponse(q []byte, records map[string][]string) []byte {
	const (
		typeA    = 1
		typeAAAA = 28
	)
	if len(q) < 12 {
		return nil
	}
	// Question: QNAME labels, then QTYPE and QCLASS.
	off := 12
	var labels []string
	for {
		if off >= len(q) {
			return nil
		}
		l := int(q[off])
		off++
		if l == 0 {
			break
		}
		if off+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[off:off+l]))
		off += l
	}
	if off+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[off:])
	question := q[12 : off+4]
	name := strings.ToLower(strings.Join(labels, "."))

	addrs, known := records[name]
	var answers [][]byte
	for _, s := range addrs {
		ip := netip.MustParseAddr(s)
		var rtype uint16
		switch {
		case ip.Is4() && qtype == typeA:
			rtype = typeA
		case ip.Is6() && qtype == typeAAAA:
			rtype = typeAAAA
		default:
			continue
		}
		rdata := ip.AsSlice()
		rr := []byte{0xc0, 12} // compression pointer to the question name
		rr = binary.BigEndian.AppendUint16(rr, rtype)
		rr = binary.BigEndian.AppendUint16(rr, 1)  // class IN
		rr = binary.BigEndian.AppendUint32(rr, 60) // TTL
		rr = binary.BigEndian.AppendUint16(rr, uint16(len(rdata)))
		answers = append(answers, append(rr, rdata...))
	}

	flags := uint16(0x8000 | 0x0400 | 0x0080) // response, authoritative, recursion available
	flags |= binary.BigEndian.Uint16(q[2:]) & 0x0100
	if !known {
		flags |= 3 // NXDOMAIN
	}
	resp := append([]byte(nil), q[0:2]...) // ID
	resp = binary.BigEndian.AppendUint16(resp, flags)
	resp = binary.BigEndian.AppendUint16(resp, 1) // QDCOUNT
	resp = binary.BigEndian.AppendUint16(resp, uint16(len(answers)))
	resp = binary.BigEndian.AppendUint16(resp, 0) // NSCOUNT
	resp = binary.BigEndian.AppendUint16(resp, 0) // ARCOUNT
	resp = append(resp, question...)
	for _, a := range answers {
		resp = append(resp, a...)
	}
	return resp
}

// TestValidateURLDNSErrorHidesResolver: the message of a failed lookup is
// shown to API clients, so it names the host and what went wrong, never
// the resolver's address or the network error behind it.
func TestValidateURLDNSErrorHidesResolver(t *testing.T) {
	unreachable := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: network, Addr: &net.UDPAddr{IP: net.IPv4(10, 9, 8, 7), Port: 53}, Err: errors.New("connection refused")}
		},
	}
	for name, resolver := range map[string]*net.Resolver{
		"no such host": fakeResolver(t, nil),
		"unreachable":  unreachable,
	} {
		t.Run(name, func(t *testing.T) {
			err := ValidateURL(context.Background(), "https://nxdomain.example.com/", false, resolver)
			if !errors.Is(err, ErrForbiddenTarget) {
				t.Fatalf("ValidateURL = %v, want ErrForbiddenTarget", err)
			}
			var dnsErr *net.DNSError
			if !errors.As(err, &dnsErr) {
				t.Fatalf("ValidateURL = %v, want a wrapped *net.DNSError", err)
			}
			msg := err.Error()
			for _, leak := range []string{dnsErr.Server, "10.9.8.7", ":53", "dial", "lookup nxdomain"} {
				if leak != "" && strings.Contains(msg, leak) {
					t.Errorf("message %q reveals %q", msg, leak)
				}
			}
			if !strings.Contains(msg, `"nxdomain.example.com"`) {
				t.Errorf("message %q does not name the host", msg)
			}
		})
	}
}
