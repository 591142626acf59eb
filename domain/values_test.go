package domain_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/salesos/salesos/domain"
)

func TestAmountRoundTripsExactly(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"1250.5", "1250.5"},
		{"1250.50", "1250.5"},
		{"10.0", "10"},
		{"0.1", "0.1"},
		{"0", "0"},
		{"-0", "0"},
		{"0.000", "0"},
		{"12345678901234.123456", "12345678901234.123456"},
		{"999999999999999.999999", "999999999999999.999999"},
		{"1.2500000000", "1.25"}, // trailing zeros add no precision
		{"1.25e3", "1250"},
		{"125E-2", "1.25"},
		{"1e-6", "0.000001"},
		{"-3.5", "-3.5"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var body struct {
				Amount domain.Amount `json:"amount"`
			}
			if err := json.Unmarshal([]byte(`{"amount":`+tt.in+`}`), &body); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if got := body.Amount.String(); got != tt.want {
				t.Errorf("String() = %s, want %s", got, tt.want)
			}
			if got, want := mustJSON(t, body), `{"amount":`+tt.want+`}`; got != want {
				t.Errorf("marshal = %s, want %s (a bare number)", got, want)
			}
			again, err := domain.ParseAmount(body.Amount.String())
			if err != nil || again != body.Amount {
				t.Errorf("canonical form does not parse back to itself: %v, %v", again, err)
			}
		})
	}
}

func TestAmountRejects(t *testing.T) {
	tests := []struct {
		name, in, code string
	}{
		{"a string, even holding a number", `"1250.5"`, domain.CodeInvalidFormat},
		{"a boolean", `true`, domain.CodeInvalidFormat},
		{"an object", `{}`, domain.CodeInvalidFormat},
		{"more than 6 fraction digits", `1.1234567`, domain.CodeTooPrecise},
		{"precision hidden in an exponent", `1e-7`, domain.CodeTooPrecise},
		{"more than 15 integer digits", `1234567890123456`, domain.CodeTooLong},
		{"size hidden in an exponent", `1e15`, domain.CodeTooLong},
		{"an absurd exponent", `1e999999999999`, domain.CodeTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body struct {
				Amount *domain.Amount `json:"amount"`
			}
			err := json.Unmarshal([]byte(`{"amount":`+tt.in+`}`), &body)
			if got := fieldErrors(t, err); len(got) != 1 || got[0] != "amount:"+tt.code {
				t.Errorf("got %v, want [amount:%s]", got, tt.code)
			}
		})
	}
}

func TestParseAmountRejectsNonNumbers(t *testing.T) {
	for _, in := range []string{"", "abc", "1.", ".5", "+1", "01", "1,5", "1 ", "--1", "1e", "0x10", "NaN", "Infinity"} {
		if _, err := domain.ParseAmount(in); len(fieldErrors(t, err)) != 1 || fieldErrors(t, err)[0] != "amount:invalid_format" {
			t.Errorf("ParseAmount(%q) = %v, want amount:invalid_format", in, err)
		}
	}
}

func TestAmountSign(t *testing.T) {
	for in, want := range map[string]bool{"-0.01": true, "0": false, "-0": false, "5": false} {
		a, err := domain.ParseAmount(in)
		if err != nil {
			t.Fatal(err)
		}
		if a.IsNegative() != want {
			t.Errorf("ParseAmount(%q).IsNegative() = %v, want %v", in, !want, want)
		}
	}
	if (domain.Amount{}).String() != "0" {
		t.Errorf("zero Amount should read 0")
	}
}

func TestOptTellsAbsentFromNullFromValue(t *testing.T) {
	tests := []struct {
		body      string
		set, null bool
		value     string
	}{
		{`{}`, false, false, ""},
		{`{"email":null}`, true, true, ""},
		{`{"email":"ada@example.com"}`, true, false, "ada@example.com"},
		{`{"email":""}`, true, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			p := decode[domain.LeadPatch](t, tt.body)
			if p.Email.Set != tt.set || p.Email.Null != tt.null || p.Email.Value != tt.value {
				t.Errorf("got %+v, want Set=%v Null=%v Value=%q", p.Email, tt.set, tt.null, tt.value)
			}
		})
	}
}

func TestOptKeepsTheValueTypesRules(t *testing.T) {
	var p domain.DealPatch
	err := json.Unmarshal([]byte(`{"amount":"10"}`), &p)
	if got := fieldErrors(t, err); len(got) != 1 || got[0] != "amount:invalid_format" {
		t.Errorf("string amount in a patch: got %v", got)
	}
	p = decode[domain.DealPatch](t, `{"amount":null}`)
	if !p.Amount.Set || !p.Amount.Null {
		t.Errorf("null amount: got %+v", p.Amount)
	}
}

func TestOptMarshalsWithOmitzero(t *testing.T) {
	v := struct {
		Absent  domain.Opt[string] `json:"absent,omitzero"`
		Cleared domain.Opt[string] `json:"cleared,omitzero"`
		Set     domain.Opt[string] `json:"set,omitzero"`
	}{Cleared: domain.OptNull[string](), Set: domain.OptOf("x")}
	if got, want := mustJSON(t, v), `{"cleared":null,"set":"x"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestDate(t *testing.T) {
	d, err := domain.ParseDate("2026-03-15")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustJSON(t, d); got != `"2026-03-15"` {
		t.Errorf("marshal = %s", got)
	}
	var back domain.Date
	if err := json.Unmarshal([]byte(`"2026-03-15"`), &back); err != nil || back != d {
		t.Errorf("round trip = %v, %v", back, err)
	}
	for _, bad := range []string{`"2026-02-30"`, `"2026-3-15"`, `"15/03/2026"`, `"2026-03-15T00:00:00Z"`, `20260315`, `""`} {
		err := json.Unmarshal([]byte(bad), &back)
		if got := fieldErrors(t, err); len(got) != 1 || got[0] != "expected_close_date:invalid_format" {
			t.Errorf("%s: got %v", bad, got)
		}
	}
}

func TestValidCurrency(t *testing.T) {
	tests := []struct {
		code string
		want bool
	}{
		{"USD", true},
		{"EUR", true},
		{"JPY", true},
		{"GBP", true},
		{"CHF", true},
		{"usd", false}, // codes are uppercase
		{"Usd", false},
		{"US", false},
		{"USDD", false},
		{"XYZ", false}, // well formed, not assigned
		{"DEM", false}, // withdrawn
		{"", false},
	}
	for _, tt := range tests {
		if got := domain.ValidCurrency(tt.code); got != tt.want {
			t.Errorf("ValidCurrency(%q) = %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestValidEmail(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"ada@example.com", true},
		{"ada.lovelace+crm@mail.example.co.uk", true},
		{"ada@localhost", true}, // dot-free domains are legal
		{"Ada <ada@example.com>", false},
		{"<ada@example.com>", false},
		{"ada@", false},
		{"@example.com", false},
		{"ada", false},
		{"ada@example.com ", false},
		{"ada @example.com", false},
		{"", false},
		{strings.Repeat("a", 64) + "@" + strings.Repeat("b", 186) + ".com", false}, // 255 characters
	}
	for _, tt := range tests {
		if got := domain.ValidEmail(tt.in); got != tt.want {
			t.Errorf("ValidEmail(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestValidationErrorMessageNamesEveryField(t *testing.T) {
	err := &domain.ValidationError{Details: []domain.FieldError{
		{Field: "name", Code: domain.CodeRequired, Message: "name is required"},
		{Field: "email", Code: domain.CodeInvalidFormat, Message: "email must be a valid email address"},
	}}
	want := "validation failed: name is required; email must be a valid email address"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	if got := mustJSON(t, err.Details[0]); got != `{"field":"name","code":"required","message":"name is required"}` {
		t.Errorf("FieldError JSON = %s", got)
	}
}
