package domain

// Fuzz targets of the domain's parsers: amounts and stored events. Run
// with .ci/fuzz, or one at a time:
//   go test -run '^$' -fuzz '^FuzzParseAmount$' -fuzztime 10s ./domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
)

// FuzzParseAmount: an accepted amount is held in canonical form, which
// parses back to the same amount and the same number (compared exactly, as
// rationals), within the digit limits; a refused one is a validation error
// on "amount".
func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"0", "-0", "1250.5", "1250.50", "0.1", "1e2", "1E-6", "12345678901234.123456",
		"123456789012345", "1234567890123456", "0.0000001", "1e1000000000", "-1", "01", "1.", ".5", "+1", "1e", "", "0e-7", "100e-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAmount(s)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Details) != 1 || ve.Details[0].Field != "amount" {
				t.Fatalf("ParseAmount(%q) error %v, want a ValidationError on amount", s, err)
			}
			switch ve.Details[0].Code {
			case CodeInvalidFormat, CodeTooLong, CodeTooPrecise:
			default:
				t.Fatalf("ParseAmount(%q) code %q", s, ve.Details[0].Code)
			}
			return
		}
		c := a.String()
		if strings.ContainsAny(c, "eE+") || (strings.HasPrefix(strings.TrimPrefix(c, "-"), "0") && len(strings.TrimPrefix(c, "-")) > 1 && !strings.HasPrefix(strings.TrimPrefix(c, "-"), "0.")) {
			t.Fatalf("ParseAmount(%q) = %q, not canonical", s, c)
		}
		if strings.Contains(c, ".") && strings.HasSuffix(c, "0") {
			t.Fatalf("ParseAmount(%q) = %q keeps trailing zeros", s, c)
		}
		intPart, frac, _ := strings.Cut(strings.TrimPrefix(c, "-"), ".")
		if len(strings.TrimLeft(intPart, "0")) > maxAmountIntDigits || len(frac) > maxAmountFracDigits {
			t.Fatalf("ParseAmount(%q) = %q exceeds the digit limits", s, c)
		}
		again, err := ParseAmount(c)
		if err != nil || again != a {
			t.Fatalf("canonical %q of %q parses to %v, %v", c, s, again, err)
		}
		want, ok := new(big.Rat).SetString(s)
		if !ok {
			// big.Rat refuses exponents beyond int range; only zero
			// ("0e99999999999999999999") can carry one within our limits.
			if c != "0" {
				t.Fatalf("ParseAmount(%q) = %q, which big.Rat cannot check", s, c)
			}
			return
		}
		got, _ := new(big.Rat).SetString(c)
		if got.Cmp(want) != 0 {
			t.Fatalf("ParseAmount(%q) = %q, a different number", s, c)
		}
		if a.IsNegative() != (want.Sign() < 0) {
			t.Fatalf("ParseAmount(%q).IsNegative() = %v", s, a.IsNegative())
		}
		raw, _ := a.MarshalJSON()
		var back Amount
		if !json.Valid(raw) || back.UnmarshalJSON(raw) != nil || back != a {
			t.Fatalf("JSON round trip of %q: %s -> %v", s, raw, back)
		}
	})
}

// FuzzDecodeEvent: decoding a stored event never panics; a failure is an
// unknown type/version (ErrUnknownEvent) or a payload error; a success
// re-encodes into the current version, which decodes and re-encodes to the
// same bytes.
func FuzzDecodeEvent(f *testing.F) {
	for _, typ := range EventTypes() {
		f.Add(typ, 1, []byte(`{}`))
	}
	f.Add(EventLeadCreated, 1, []byte(`{"id":"lead_1","name":"Ada","email":null,"status":"new","custom_fields":{"tier":"gold"}}`))
	f.Add(EventLeadUpdated, 1, []byte(`{"changes":{"name":{"from":"a","to":"b"}}}`))
	f.Add(EventDealCreated, 1, []byte(`{"id":"deal_1","name":"D","amount":1250.5,"currency":"EUR","stage":"qualification"}`))
	f.Add(EventDealCreated, 1, []byte(`{"amount":"12"}`))
	f.Add(EventDealLost, 1, []byte(`{"reason":"x"}`))
	f.Add(EventLeadStatusChanged, 2, []byte(`{"from":"new","to":"contacted"}`))
	f.Add("lead.unknown", 1, []byte(`{}`))
	f.Add(EventLeadCreated, 0, []byte(`{}`))
	f.Add(EventLeadCreated, 1, []byte(`not json`))
	f.Fuzz(func(t *testing.T, typ string, version int, data []byte) {
		e, err := DecodeEvent(typ, version, data)
		if err != nil {
			if c, known := eventRegistry[typ]; !known || version < 1 || version > c.version {
				if !errors.Is(err, ErrUnknownEvent) {
					t.Fatalf("DecodeEvent(%q, %d) = %v, want ErrUnknownEvent", typ, version, err)
				}
			}
			return
		}
		if e.EventType() != typ {
			t.Fatalf("decoded %q as %T (%q)", typ, e, e.EventType())
		}
		typ2, v2, data2, err := EncodeEvent(e)
		if err != nil {
			t.Fatalf("re-encode %q: %v", typ, err)
		}
		if typ2 != typ || v2 != eventRegistry[typ].version {
			t.Fatalf("re-encoded as %q v%d", typ2, v2)
		}
		e2, err := DecodeEvent(typ2, v2, data2)
		if err != nil {
			t.Fatalf("decode of our own encoding %s: %v", data2, err)
		}
		_, _, data3, err := EncodeEvent(e2)
		if err != nil || !bytes.Equal(data2, data3) {
			t.Fatalf("encoding not stable: %s then %s (%v)", data2, data3, err)
		}
	})
}

// FuzzUpcast runs stored payloads of an older version through an upcaster
// (the mechanism every future schema change uses, on a registry of its
// own, as in TestRegistryUpcastsOldPayloads): no panic, failures are
// errors, and an upcast event re-encodes at the current version.
func FuzzUpcast(f *testing.F) {
	f.Add(1, []byte(`{"previous":"new","to":"contacted"}`))
	f.Add(1, []byte(`{"previous":7}`))
	f.Add(2, []byte(`{"from":"new","to":"qualified"}`))
	f.Add(3, []byte(`{}`))
	f.Add(1, []byte(`[`))
	c := codecOf[LeadStatusChanged](2)
	c.upcaster = map[int]func(json.RawMessage) (json.RawMessage, error){
		1: func(v1 json.RawMessage) (json.RawMessage, error) {
			var old struct {
				Previous LeadStatus `json:"previous"`
				To       LeadStatus `json:"to"`
			}
			if err := json.Unmarshal(v1, &old); err != nil {
				return nil, err
			}
			return json.Marshal(LeadStatusChanged{From: old.Previous, To: old.To})
		},
	}
	r := registry{EventLeadStatusChanged: c}
	f.Fuzz(func(t *testing.T, version int, data []byte) {
		e, err := r.decode(EventLeadStatusChanged, version, data)
		if err != nil {
			if (version < 1 || version > 2) && !errors.Is(err, ErrUnknownEvent) {
				t.Fatalf("version %d: %v, want ErrUnknownEvent", version, err)
			}
			return
		}
		if _, v, _, err := r.encode(e); err != nil || v != 2 {
			t.Fatalf("upcast event encodes as v%d, %v", v, err)
		}
	})
}
