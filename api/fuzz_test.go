package api

// Fuzz targets of what the API parses from clients: JSON bodies (the edge's
// character check, decoding, merge patches), the event-feed cursor, the
// consistency token and as_of. Run one with
//   go test -run '^$' -fuzz '^FuzzBodyCharacters$' -fuzztime 10s ./api
// or all of them with .ci/fuzz. The seeds below and testdata/fuzz/ run as
// ordinary tests on every go test.

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/domain"
)

var bodySeeds = []string{
	`{"name":"Ada"}`,
	`{"name":"a\u0000b"}`,
	`{"name":"\ud800"}`,
	`{"name":"\ud83d\ude00"}`,
	"{\"name\":\"a\xffb\"}",
	`{"custom_fields":{"tier":"gold","n":{"a":[1,"x",null]}}}`,
	`{"custom_fields":{"t\u0000":1}}`,
	`{"custom_fields":null,"company":null}`,
	`{"status":"contacted","phone":"+44 20 7946 0958","custom_fields":{"tier":null}}`,
	`{"stage":"lost","lost_reason":"price","amount":1250.5,"currency":"EUR"}`,
	`{"amount":1e400}`,
	`{"expected_close_date":"2026-02-30"}`,
	`{"name":"a\\u0000b"}`,
	`{"name":"x"}}`,
	`{"name":`,
	`[1,2]`,
	`{"a":[[[[[[[[[[]]]]]]]]]]}`,
	`  {"name" : "x" , "email" : "a@b.c" }  `,
}

// stringsOf collects every key and string of a decoded JSON value.
func stringsOf(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case []any:
		for _, e := range x {
			stringsOf(e, out)
		}
	case map[string]any:
		for k, e := range x {
			*out = append(*out, k)
			stringsOf(e, out)
		}
	}
}

// FuzzBodyCharacters checks the edge's scan of JSON strings against what
// encoding/json decodes. For a valid JSON object:
//   - nothing reported  => the raw body is UTF-8, and no decoded key or
//     string holds NUL or a U+FFFD the decoder substituted;
//   - something reported => the body really holds one of those.
func FuzzBodyCharacters(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		details := bodyCharacterProblems(body)
		for _, d := range details {
			if d.Code != CodeInvalidCharacters || d.Message == "" || !utf8.ValidString(d.Field) || strings.IndexByte(d.Field, 0) >= 0 {
				t.Fatalf("bad detail %+v", d)
			}
		}
		if len(details) > maxCharacterDetails {
			t.Fatalf("%d details, want at most %d", len(details), maxCharacterDetails)
		}
		trimmed := bytes.TrimSpace(body)
		if !json.Valid(body) || len(trimmed) == 0 || trimmed[0] != '{' {
			return
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return // valid but too deep
		}
		var strs []string
		stringsOf(v, &strs)
		// U+FFFD can be sent on purpose, literally or escaped; only one the
		// decoder made up is a sign of bad input.
		sentFFFD := bytes.Contains(body, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`))
		bad := !utf8.Valid(body)
		for _, s := range strs {
			if strings.IndexByte(s, 0) >= 0 || (!sentFFFD && strings.ContainsRune(s, utf8.RuneError)) {
				bad = true
			}
		}
		if bad && len(details) == 0 {
			t.Fatalf("unstorable body accepted: %q", body)
		}
		if !bad && !sentFFFD && len(details) > 0 {
			t.Fatalf("clean body refused with %+v: %q", details, body)
		}
	})
}

// decodeBody runs decodeJSON on body the way a request would.
func decodeBody(t *testing.T, body []byte, v any, allowEmpty bool) error {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	rec := httptest.NewRecorder()
	req.Body = http.MaxBytesReader(rec, req.Body, MaxBodyBytes)
	return decodeJSON(echo.New().NewContext(req, rec), v, allowEmpty)
}

// wantClientError fails unless err maps to a 4xx of the contract.
func wantClientError(t *testing.T, err error) {
	t.Helper()
	e := toError(err)
	if e.Status < 400 || e.Status > 499 {
		t.Fatalf("error %v maps to %d, want a 4xx", err, e.Status)
	}
	if e.Status == http.StatusUnprocessableEntity && len(e.Details) == 0 && e.Code == "validation_failed" {
		t.Fatalf("422 without details: %v", err)
	}
}

// storableEvents fails if an event would store NUL or invalid UTF-8.
func storableEvents(t *testing.T, evs []domain.Event) {
	t.Helper()
	for _, e := range evs {
		_, _, data, err := domain.EncodeEvent(e)
		if err != nil {
			t.Fatalf("encode %T: %v", e, err)
		}
		var v any
		if err := json.Unmarshal(data, &v); err != nil || !utf8.Valid(data) {
			t.Fatalf("event %s is not valid JSON text: %q", e.EventType(), data)
		}
		var strs []string
		stringsOf(v, &strs)
		for _, s := range strs {
			if strings.IndexByte(s, 0) >= 0 {
				t.Fatalf("event %s holds NUL: %q", e.EventType(), data)
			}
		}
	}
}

func fold[T any](t *testing.T, foldFn func(string, []domain.Recorded) (T, error), id string, evs []domain.Event) T {
	t.Helper()
	rec := make([]domain.Recorded, len(evs))
	for i, e := range evs {
		rec[i] = domain.Recorded{Event: e, Metadata: domain.Metadata{OccurredAt: time.Unix(int64(i), 0).UTC()}}
	}
	v, err := foldFn(id, rec)
	if err != nil {
		t.Fatalf("fold: %v", err)
	}
	return v
}

// FuzzLeadPatch decodes a PATCH body like the API does (edge check, then
// decodeJSON) and applies it to a lead. Properties: no panic; every refusal
// is a 4xx; what is accepted yields storable events; and a merge patch is
// idempotent — applying the same patch to its own result changes nothing.
func FuzzLeadPatch(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(bodyCharacterProblems(body)) > 0 {
			return // refused at the edge
		}
		var patch domain.LeadPatch
		if err := decodeBody(t, body, &patch, false); err != nil {
			wantClientError(t, err)
			return
		}
		created, err := domain.CreateLead("lead_1", "org", domain.LeadInput{Name: "Ada", CustomFields: map[string]json.RawMessage{"tier": json.RawMessage(`"gold"`), "n": json.RawMessage(`{"a":1}`)}})
		if err != nil {
			t.Fatal(err)
		}
		lead := fold(t, domain.FoldLead, "lead_1", created)
		evs, err := lead.Update(patch)
		if err != nil {
			wantClientError(t, err)
			return
		}
		storableEvents(t, evs)
		after := fold(t, domain.FoldLead, "lead_1", append(created, evs...))
		again, err := after.Update(patch)
		if err != nil || len(again) != 0 {
			t.Fatalf("patch %s applied twice: events %v, err %v", body, again, err)
		}
	})
}

// FuzzDealPatch is FuzzLeadPatch for deals (amounts, dates and stage rules
// included).
func FuzzDealPatch(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(bodyCharacterProblems(body)) > 0 {
			return
		}
		var patch domain.DealPatch
		if err := decodeBody(t, body, &patch, false); err != nil {
			wantClientError(t, err)
			return
		}
		amount, _ := domain.ParseAmount("10")
		cur := "EUR"
		created, err := domain.CreateDeal("deal_1", "org", domain.DealInput{Name: "D", Amount: &amount, Currency: &cur})
		if err != nil {
			t.Fatal(err)
		}
		deal := fold(t, domain.FoldDeal, "deal_1", created)
		evs, err := deal.Update(patch)
		if err != nil {
			wantClientError(t, err)
			return
		}
		storableEvents(t, evs)
		after := fold(t, domain.FoldDeal, "deal_1", append(created, evs...))
		again, err := after.Update(patch)
		if err != nil || len(again) != 0 {
			t.Fatalf("patch %s applied twice: events %v, err %v", body, again, err)
		}
	})
}

// FuzzCreateBodies decodes arbitrary bodies into the API's other body
// types, as the handlers do after the edge check: no panic, every refusal
// is a 4xx in the contract (an *Error or a domain validation error), and a
// lead or deal created from an accepted body yields storable events.
func FuzzCreateBodies(f *testing.F) {
	for i, s := range bodySeeds {
		f.Add([]byte(s), uint8(i))
	}
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		if len(bodyCharacterProblems(body)) > 0 {
			return
		}
		var (
			lead    domain.LeadInput
			deal    domain.DealInput
			convert convertBody
			recov   recoverBody
		)
		targets := []any{&lead, &deal, &convert, &recov}
		v := targets[int(which)%len(targets)]
		if err := decodeBody(t, body, v, which%2 == 0); err != nil {
			wantClientError(t, err)
			var apiErr *Error
			var ve *domain.ValidationError
			if !errors.As(err, &apiErr) && !errors.As(err, &ve) {
				t.Fatalf("decodeJSON error %T %v is neither *Error nor *ValidationError", err, err)
			}
			return
		}
		var evs []domain.Event
		var err error
		switch v.(type) {
		case *domain.LeadInput:
			evs, err = domain.CreateLead("lead_1", "org", lead)
		case *domain.DealInput:
			evs, err = domain.CreateDeal("deal_1", "org", deal)
		case *convertBody:
			created, cerr := domain.CreateLead("lead_1", "org", domain.LeadInput{Name: "Ada"})
			if cerr != nil {
				t.Fatal(cerr)
			}
			evs, err = domain.DealFromConversion("deal_1", "org", fold(t, domain.FoldLead, "lead_1", created), convert.Deal)
		default:
			return
		}
		if err != nil {
			wantClientError(t, err)
			return
		}
		storableEvents(t, evs)
	})
}

// FuzzFeedCursor: a feed cursor decodes only to a position >= 0, and the
// position's own cursor decodes to it again.
func FuzzFeedCursor(f *testing.F) {
	for _, s := range []string{encodeFeedCursor(0), encodeFeedCursor(42), encodeFeedCursor(1<<62 + 7), "ZjEuLTE", "ZjEuAA", "MXwA", "", "%%%", "ZjEuMDA3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := decodeFeedCursor(s)
		if !ok {
			return
		}
		if n < 0 {
			t.Fatalf("cursor %q decodes to %d", s, n)
		}
		if m, ok := decodeFeedCursor(encodeFeedCursor(n)); !ok || m != n {
			t.Fatalf("position %d: round trip gives %d, %v", n, m, ok)
		}
	})
}

// FuzzConsistencyToken: only "c1.<digits>" tokens are accepted, and the
// token a write hands out for a position reads back as that position.
func FuzzConsistencyToken(f *testing.F) {
	for _, s := range []string{"c1.1", "c1.18446744073709551615", "c1.18446744073709551616", "c1.", "c1.+5", "c1.-1", "c2.5", "5", "c1.007", "c1.1\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pos, ok := parseConsistencyToken(s)
		if !ok {
			return
		}
		digits := strings.TrimPrefix(s, tokenPrefix)
		if !strings.HasPrefix(s, tokenPrefix) || digits == "" || strings.Trim(digits, "0123456789") != "" {
			t.Fatalf("accepted %q", s)
		}
		back, ok := parseConsistencyToken(tokenPrefix + strconv.FormatUint(pos, 10))
		if !ok || back != pos {
			t.Fatalf("position %d: round trip gives %d, %v", pos, back, ok)
		}
	})
}

// FuzzAsOf: an accepted as_of is an instant in UTC, which written back in
// RFC 3339 reads as the same instant.
func FuzzAsOf(f *testing.F) {
	for _, s := range []string{"2026-03-15T14:30:00Z", "2026-03-15T14:30:00.123456789+02:00", "0000-01-01T00:00:00+00:01", "9999-12-31T23:59:59-23:59", "2026-02-30T00:00:00Z", "2026-03-15", "2026-03-15T24:00:00Z", "2026-03-15T14:30:00z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		at, err := parseTimestamp(s)
		if err != nil {
			return
		}
		if at.Location() != time.UTC {
			t.Fatalf("%q parses to %v, not UTC", s, at)
		}
		if y := at.Year(); y < 0 || y > 9999 {
			return // outside what RFC 3339 can write back; still harmless
		}
		back, err := parseTimestamp(at.Format(time.RFC3339Nano))
		if err != nil || !back.Equal(at) {
			t.Fatalf("%q -> %v -> %v, %v", s, at, back, err)
		}
	})
}
