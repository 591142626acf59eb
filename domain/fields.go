package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
)

// Field rules shared by leads and deals. Each check reports into p and never
// stops at the first problem.

func checkName(p *problems, field, name string) {
	switch {
	case strings.TrimSpace(name) == "":
		p.add(field, CodeRequired, field+" is required")
	case charLen(name) > MaxNameLength:
		p.add(field, CodeTooLong, fmt.Sprintf("%s must be at most %d characters", field, MaxNameLength))
	}
}

func checkText(p *problems, field string, v *string) {
	if v != nil && charLen(*v) > MaxStringLength {
		p.add(field, CodeTooLong, fmt.Sprintf("%s must be at most %d characters", field, MaxStringLength))
	}
}

func checkEmail(p *problems, field string, v *string) {
	switch {
	case v == nil:
	case len(*v) > MaxEmailLength:
		p.add(field, CodeTooLong, fmt.Sprintf("%s must be at most %d characters", field, MaxEmailLength))
	case !ValidEmail(*v):
		p.add(field, CodeInvalidFormat, field+" must be a valid email address such as ada@example.com")
	}
}

func checkCurrency(p *problems, field string, v *string) {
	switch {
	case v == nil:
	case !wellFormedCurrency(*v):
		p.add(field, CodeInvalidFormat, field+" must be an uppercase ISO 4217 code such as USD")
	case !ValidCurrency(*v):
		p.add(field, CodeInvalidValue, fmt.Sprintf("%s %q is not an active ISO 4217 currency code", field, *v))
	}
}

// normalizeCustomFields validates a custom_fields object and returns it in
// canonical form: every value re-encoded compactly with sorted object keys,
// and null members dropped (a null member means "absent", as in a merge
// patch applied to an empty object). The canonical form makes byte equality
// mean JSON equality, which no-op detection and change lists rely on.
func normalizeCustomFields(p *problems, field string, in map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(in))
	for k, raw := range in {
		v, ok := decodeCustomField(p, field, k, raw)
		if !ok || v == nil {
			continue
		}
		out[k] = encodeJSONValue(v)
	}
	checkCustomFieldShape(p, field, out)
	return out
}

// mergeCustomFields applies a merge patch to the current custom fields
// without modifying either map: aggregates and events share maps, so they
// must be treated as immutable once built.
func mergeCustomFields(p *problems, field string, current, patch map[string]json.RawMessage) map[string]json.RawMessage {
	out := maps.Clone(current)
	if out == nil {
		out = map[string]json.RawMessage{}
	}
	for k, raw := range patch {
		pv, ok := decodeCustomField(p, field, k, raw)
		if !ok {
			continue
		}
		if pv == nil {
			delete(out, k)
			continue
		}
		var cur any
		if c, ok := out[k]; ok {
			cur, _ = decodeJSONValue(c) // stored values are canonical JSON
		}
		out[k] = encodeJSONValue(mergePatch(cur, pv))
	}
	checkCustomFieldShape(p, field, out)
	return out
}

// decodeCustomField decodes one member of a custom_fields object, reporting
// a value that is not JSON under the member's own name.
func decodeCustomField(p *problems, field, key string, raw json.RawMessage) (any, bool) {
	v, err := decodeJSONValue(raw)
	if err != nil {
		p.add(field+"."+key, CodeInvalidFormat, "custom field values must be valid JSON")
		return nil, false
	}
	return v, true
}

func checkCustomFieldShape(p *problems, field string, m map[string]json.RawMessage) {
	if len(m) > MaxCustomFields {
		p.add(field, CodeTooLong, fmt.Sprintf("%s must have at most %d keys", field, MaxCustomFields))
	}
	for k := range m {
		if n := charLen(k); n == 0 || n > MaxCustomFieldKeyLen {
			p.add(field, CodeInvalidFormat, fmt.Sprintf("%s keys must be 1 to %d characters", field, MaxCustomFieldKeyLen))
			return
		}
	}
}

// mergePatch is RFC 7396 applied to decoded values: objects merge member by
// member, null removes a member, anything else replaces.
func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if ok {
		tm = maps.Clone(tm)
	} else {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
			continue
		}
		tm[k] = mergePatch(tm[k], v)
	}
	return tm
}

// decodeJSONValue decodes with UseNumber so numbers keep their exact
// literal: a custom field holding 0.1 or 12345678901234567890 comes back
// unchanged.
func decodeJSONValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after JSON value")
	}
	return v, nil
}

// encodeJSONValue uses json.Marshal's defaults (including HTML escaping) on
// purpose: event payloads are written with json.Marshal, which re-escapes raw
// messages, so any other encoding would not survive a round trip byte for byte.
func encodeJSONValue(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		// Values come from decodeJSONValue, which only produces encodable types.
		panic(fmt.Sprintf("domain: re-encoding a decoded JSON value: %v", err))
	}
	return b
}

func equalCustomFields(a, b map[string]json.RawMessage) bool {
	return maps.EqualFunc(a, b, func(x, y json.RawMessage) bool { return bytes.Equal(x, y) })
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// applyOpt returns the value a nullable field has after the patch field o.
func applyOpt[T any](cur *T, o Opt[T]) *T {
	switch {
	case !o.Set:
		return cur
	case o.Null:
		return nil
	default:
		v := o.Value
		return &v
	}
}

// optFor returns the event field that moves a nullable value from cur to
// next, or an absent Opt when it does not change.
func optFor[T comparable](cur, next *T) Opt[T] {
	if equalPtr(cur, next) {
		return Opt[T]{}
	}
	if next == nil {
		return OptNull[T]()
	}
	return OptOf(*next)
}

func ptr[T any](v T) *T { return &v }
