package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on client-supplied values. They bound storage and keep list pages
// and webhook payloads a predictable size.
const (
	MaxNameLength        = 200 // characters, for lead and deal names
	MaxStringLength      = 500 // characters, for every other free-text field
	MaxEmailLength       = 254 // the longest address SMTP can carry (RFC 5321)
	MaxCustomFields      = 50
	MaxCustomFieldKeyLen = 64
	maxAmountIntDigits   = 15
	maxAmountFracDigits  = 6
)

// Opt is one field of a JSON merge patch (RFC 7396). It tells apart the three
// things a PATCH body can say about a field: nothing (absent), "clear it"
// (null) and "set it" (a value). A pointer cannot, because encoding/json turns
// both absent and null into nil.
//
// Opt works as a plain (non-pointer) struct field: encoding/json calls
// UnmarshalJSON with the literal null instead of skipping it.
type Opt[T any] struct {
	Set   bool // the field was present in the document
	Null  bool // the field was present as null
	Value T    // meaningful only when Set && !Null
}

// OptOf returns an Opt that sets the field to v.
func OptOf[T any](v T) Opt[T] { return Opt[T]{Set: true, Value: v} }

// OptNull returns an Opt that clears the field.
func OptNull[T any]() Opt[T] { return Opt[T]{Set: true, Null: true} }

// UnmarshalJSON records that the field was present; the value itself is
// decoded by T, so T's own validation (Amount, Date) still applies.
func (o *Opt[T]) UnmarshalJSON(data []byte) error {
	var zero T
	*o = Opt[T]{Set: true}
	if string(bytes.TrimSpace(data)) == "null" {
		o.Null = true
		return nil
	}
	if err := json.Unmarshal(data, &o.Value); err != nil {
		o.Value = zero
		return err
	}
	return nil
}

// MarshalJSON writes null for both absent and null fields; pair it with the
// `omitzero` tag option to drop absent ones, which is how event payloads keep
// the three states distinct on the wire.
func (o Opt[T]) MarshalJSON() ([]byte, error) {
	if !o.Set || o.Null {
		return []byte("null"), nil
	}
	return json.Marshal(o.Value)
}

// IsZero reports whether the field was absent; `omitzero` relies on it.
func (o Opt[T]) IsZero() bool { return !o.Set }

// Amount is an exact decimal money amount. It never passes through float64,
// so 0.1 stays 0.1 and 12345678901234.123456 keeps every digit, from the
// request body through the event store to the webhook payload.
//
// The zero value is 0. Amounts are comparable with ==, because they are
// always held in canonical form.
type Amount struct {
	s string // canonical decimal, "" meaning "0"
}

// ParseAmount reads a decimal in JSON number syntax (exponents allowed) and
// returns it in canonical form. Negative amounts parse, so that the rule
// that rejects them can report must_be_non_negative on the right field.
//
// Errors are *ValidationError on the field "amount" (the only field of the
// contract that holds an Amount), so the API can report them as is.
func ParseAmount(s string) (Amount, error) {
	a, code, msg := parseDecimal(s)
	if code != "" {
		return Amount{}, &ValidationError{Details: []FieldError{{Field: "amount", Code: code, Message: msg}}}
	}
	return a, nil
}

func parseDecimal(s string) (a Amount, code, msg string) {
	const badFormat = "amount must be a decimal number such as 1250.5"
	i, n := 0, len(s)
	neg := false
	if i < n && s[i] == '-' {
		neg = true
		i++
	}
	start := i
	switch {
	case i < n && s[i] == '0':
		i++
	case i < n && s[i] >= '1' && s[i] <= '9':
		for i < n && isDigit(s[i]) {
			i++
		}
	default:
		return Amount{}, CodeInvalidFormat, badFormat
	}
	intDigits := s[start:i]
	fracDigits := ""
	if i < n && s[i] == '.' {
		i++
		fs := i
		for i < n && isDigit(s[i]) {
			i++
		}
		if i == fs {
			return Amount{}, CodeInvalidFormat, badFormat
		}
		fracDigits = s[fs:i]
	}
	exp := 0
	if i < n && (s[i] == 'e' || s[i] == 'E') {
		i++
		expNeg := false
		if i < n && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		es := i
		for i < n && isDigit(s[i]) {
			// Saturate instead of overflowing: any exponent this large
			// already makes a non-zero amount too long or too precise.
			if exp < 1_000_000 {
				exp = exp*10 + int(s[i]-'0')
			}
			i++
		}
		if i == es {
			return Amount{}, CodeInvalidFormat, badFormat
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != n {
		return Amount{}, CodeInvalidFormat, badFormat
	}

	// Work on the significant digits and the position of the decimal point
	// within them; exponents only move the point.
	digits := intDigits + fracDigits
	point := len(intDigits) + exp
	for len(digits) > 0 && digits[0] == '0' {
		digits = digits[1:]
		point--
	}
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return Amount{}, "", "" // zero, including -0
	}
	if point > maxAmountIntDigits {
		return Amount{}, CodeTooLong, fmt.Sprintf("amount must have at most %d digits before the decimal point", maxAmountIntDigits)
	}
	if len(digits)-point > maxAmountFracDigits {
		return Amount{}, CodeTooPrecise, fmt.Sprintf("amount must have at most %d digits after the decimal point", maxAmountFracDigits)
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	switch {
	case point <= 0:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -point))
		b.WriteString(digits)
	case point >= len(digits):
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", point-len(digits)))
	default:
		b.WriteString(digits[:point])
		b.WriteByte('.')
		b.WriteString(digits[point:])
	}
	return Amount{s: b.String()}, "", ""
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// String returns the canonical form: no exponent, no trailing fractional
// zeros, no leading zeros ("1250.5", "10", "0.1").
func (a Amount) String() string {
	if a.s == "" {
		return "0"
	}
	return a.s
}

// IsNegative reports whether the amount is below zero.
func (a Amount) IsNegative() bool { return strings.HasPrefix(a.s, "-") }

// MarshalJSON writes a bare JSON number, as the contract promises.
func (a Amount) MarshalJSON() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalJSON accepts only a JSON number. Strings are refused even when
// they hold a number: the contract says amounts are numbers, and accepting
// "1250.50" would invite clients to depend on an undocumented leniency.
func (a *Amount) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if string(data) == "null" {
		return nil // encoding/json convention; Opt and pointers handle null themselves
	}
	if len(data) > 0 && data[0] == '"' {
		return &ValidationError{Details: []FieldError{{Field: "amount", Code: CodeInvalidFormat, Message: "amount must be a JSON number, not a string"}}}
	}
	v, err := ParseAmount(string(data))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Date is a calendar date without time or zone, such as a deal's expected
// close date: "2026-03-15" means that day wherever the reader is.
type Date struct {
	year  int
	month time.Month
	day   int
}

const dateLayout = "2006-01-02"

// ParseDate reads a date in the form 2026-03-15. Errors are
// *ValidationError on the field "expected_close_date", the contract's only
// date-only field.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(dateLayout, s)
	if err != nil || t.Format(dateLayout) != s {
		return Date{}, &ValidationError{Details: []FieldError{{Field: "expected_close_date", Code: CodeInvalidFormat, Message: "expected_close_date must be a date such as 2026-03-15"}}}
	}
	return DateOf(t), nil
}

// DateOf returns the calendar date of t in t's own location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{year: y, month: m, day: d}
}

// String returns the date as 2026-03-15.
func (d Date) String() string {
	return fmt.Sprintf("%04d-%02d-%02d", d.year, int(d.month), d.day)
}

// MarshalJSON writes the date as a JSON string such as "2026-03-15".
func (d Date) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(d.String())), nil }

// UnmarshalJSON reads a JSON string such as "2026-03-15".
func (d *Date) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return &ValidationError{Details: []FieldError{{Field: "expected_close_date", Code: CodeInvalidFormat, Message: "expected_close_date must be a date string such as \"2026-03-15\""}}}
	}
	v, err := ParseDate(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// iso4217 is ISO 4217 list one (current currency and funds codes), including
// fund, precious-metal and special codes that the standard lists as active.
// Update it when the maintenance agency publishes an amendment.
const iso4217 = "" +
	"AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL " +
	"BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF " +
	"DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG " +
	"HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK " +
	"LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN " +
	"NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR " +
	"SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP " +
	"TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU " +
	"XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG"

var currencies = func() map[string]struct{} {
	m := make(map[string]struct{})
	for _, c := range strings.Fields(iso4217) {
		m[c] = struct{}{}
	}
	return m
}()

// ValidCurrency reports whether code is an active ISO 4217 code. Codes are
// case sensitive: "usd" is not a code, and accepting it would leave two
// spellings of the same currency in reports.
func ValidCurrency(code string) bool {
	_, ok := currencies[code]
	return ok
}

func wellFormedCurrency(code string) bool {
	if len(code) != 3 {
		return false
	}
	for i := range len(code) {
		if code[i] < 'A' || code[i] > 'Z' {
			return false
		}
	}
	return true
}

// ValidEmail reports whether s is a bare address (no display name, no angle
// brackets) that net/mail accepts, with a domain part. Domains without a dot
// are allowed: they are legal and do occur on intranets.
func ValidEmail(s string) bool {
	if len(s) > MaxEmailLength {
		return false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1
}

// charLen counts characters the way a person counts them in a form field,
// not bytes.
func charLen(s string) int { return utf8.RuneCountInString(s) }
