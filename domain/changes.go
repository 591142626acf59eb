package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Change is one field's old and new public JSON value, as shown in history
// entries and webhook payloads. A field that did not exist is null.
type Change struct {
	From json.RawMessage `json:"from"`
	To   json.RawMessage `json:"to"`
}

// Bookkeeping fields change on every event; listing them would bury the
// changes a person made.
var untrackedFields = map[string]bool{"id": true, "version": true, "created_at": true, "updated_at": true}

var jsonNull = json.RawMessage("null")

// LeadChanges lists the public fields that differ between two states of a
// lead. A lead that does not exist (the zero Lead before creation, or a
// deleted one) has every field null, so a creation lists every non-null
// field with from=null and a deletion lists them all with to=null.
// The result is never nil, so it serializes as {}.
func LeadChanges(before, after Lead) map[string]Change {
	return changes(before, before.exists(), after, after.exists())
}

// DealChanges is LeadChanges for deals.
func DealChanges(before, after Deal) map[string]Change {
	return changes(before, before.exists(), after, after.exists())
}

func changes(before any, beforeExists bool, after any, afterExists bool) map[string]Change {
	b := publicFields(before, beforeExists)
	a := publicFields(after, afterExists)
	out := map[string]Change{}
	add := func(k string) {
		if untrackedFields[k] {
			return
		}
		from, to := fieldOrNull(b, k), fieldOrNull(a, k)
		if !bytes.Equal(from, to) {
			out[k] = Change{From: from, To: to}
		}
	}
	for k := range b {
		add(k)
	}
	for k := range a {
		if _, seen := b[k]; !seen {
			add(k)
		}
	}
	return out
}

func publicFields(v any, exists bool) map[string]json.RawMessage {
	if !exists {
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		// Leads and deals hold only values that marshal.
		panic(fmt.Sprintf("domain: marshal %T: %v", v, err))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		panic(fmt.Sprintf("domain: unmarshal %T: %v", v, err))
	}
	return m
}

func fieldOrNull(m map[string]json.RawMessage, k string) json.RawMessage {
	if v, ok := m[k]; ok {
		return v
	}
	return jsonNull
}
