package domain

import (
	"encoding/json"
	"errors"
	"time"
)

// What leads and deals have in common: the required name, the nullable
// free-text fields, custom fields, the bookkeeping a fold keeps, and the
// shape of deleting and folding. The rules that tell the kinds apart
// (statuses and conversion, stages and amounts) stay in lead.go and deal.go.
// The struct types themselves are not shared: their field lists are the
// wire contract and other packages build them with composite literals.

// customFields is the map type of every custom_fields member.
type customFields = map[string]json.RawMessage

// orEmpty makes a missing custom_fields object an empty one, so that it
// always serializes as {} and never as null.
func orEmpty(m customFields) customFields {
	if m == nil {
		return customFields{}
	}
	return m
}

// requireIDs is the guard every creation decision starts with; both ids come
// from the command layer, so a missing one is a programming error, not a
// validation problem.
func requireIDs(decision, what, id, orgID string) error {
	if id == "" || orgID == "" {
		return errors.New("domain: " + decision + " needs " + what + " and an organization")
	}
	return nil
}

// Patch helpers. Each applies one member of a merge patch to the next state
// and checks the result only when the patch names the member, so a stored
// value that predates a rule never blocks an unrelated change. They report
// into p in the order they are called, which is the order of the details in
// the resulting ValidationError.

// patchName applies a patch to the required name: it may change but never be
// cleared.
func patchName(p *problems, cur string, o Opt[string]) string {
	switch {
	case o.Set && o.Null:
		p.add("name", CodeRequired, "name is required and cannot be cleared")
	case o.Set:
		checkName(p, "name", o.Value)
	}
	return applyName(cur, o)
}

// patchChecked applies a patch to a nullable field and runs check, one of
// the field rules in fields.go, on the value it leaves.
func patchChecked[T any](p *problems, field string, cur *T, o Opt[T], check func(*problems, string, *T)) *T {
	next := applyOpt(cur, o)
	if o.Set {
		check(p, field, next)
	}
	return next
}

// patchText applies a patch to a nullable free-text field.
func patchText(p *problems, field string, cur *string, o Opt[string]) *string {
	return patchChecked(p, field, cur, o, checkText)
}

// patchCustomFields applies a patch to custom_fields: null empties the
// object, an object is merged into it (RFC 7396).
func patchCustomFields(p *problems, cur customFields, o Opt[customFields]) customFields {
	if !o.Set {
		return cur
	}
	if o.Null {
		return customFields{}
	}
	return mergeCustomFields(p, "custom_fields", cur, o.Value)
}

// Change detection: the members of an *Updated event for the common fields,
// absent when the value did not change.

func nameChange(cur, next string) Opt[string] {
	if cur == next {
		return Opt[string]{}
	}
	return OptOf(next)
}

func customFieldsChange(cur, next customFields) Opt[customFields] {
	if equalCustomFields(cur, next) {
		return Opt[customFields]{}
	}
	return OptOf(next)
}

// Fold helpers: how an *Updated event moves the common fields.

// applyName keeps the name when the event does not carry one; events never
// clear it.
func applyName(cur string, o Opt[string]) string {
	if o.Set && !o.Null {
		return o.Value
	}
	return cur
}

// applyCustomFields replaces the object when the event carries one: events
// hold the complete object after the merge.
func applyCustomFields(cur customFields, o Opt[customFields]) customFields {
	if !o.Set {
		return cur
	}
	return orEmpty(o.Value)
}

// createdID is the record's id after its creation event: the event's, unless
// an older payload left it out and the fold's preset id must stand.
func createdID(cur, fromEvent string) string {
	if fromEvent != "" {
		return fromEvent
	}
	return cur
}

// recordState is what fold needs from a record
// kind: pointer receivers, because Apply changes the state in place.
type recordState[S any] interface {
	*S
	Apply(Event, Metadata)
	exists() bool
}

// fold rebuilds a record from its stream, starting from s (which carries the
// preset id). It returns ErrNotFound when the stream holds no creation or
// ends in a deletion, together with the folded state, which history and
// as_of reads may still need.
func fold[S any, P recordState[S]](s S, events []Recorded) (S, error) {
	for _, r := range events {
		P(&s).Apply(r.Event, r.Metadata)
	}
	if !P(&s).exists() {
		return s, ErrNotFound
	}
	return s, nil
}

// decideDelete is the deletion decision of every kind: only an existing
// record can be deleted, and deleting is a single event.
func decideDelete(exists bool, deleted Event) ([]Event, error) {
	if !exists {
		return nil, ErrNotFound
	}
	return []Event{deleted}, nil
}

// stamp is the bookkeeping every event does, whatever its type, even one
// this build does not understand: Version must equal the stream position
// for optimistic concurrency to work.
func stamp(updatedAt *time.Time, version *int64, at time.Time) {
	*updatedAt = at
	*version++
}
