package domain

import (
	"errors"
	"strings"
)

// ErrNotFound means the record does not exist for the caller: it was never
// created or it has been deleted. The API maps it to 404, which is also what
// another organization's records must look like, so callers never need a
// separate "forbidden" path for tenancy.
var ErrNotFound = errors.New("not found")

// ErrConflict means the command is well formed but the record's current state
// forbids it (for example converting a lead twice). Always wrap it with the
// reason: fmt.Errorf("%w: lead is already converted", ErrConflict).
var ErrConflict = errors.New("conflict")

// ErrUnknownEvent is returned by DecodeEvent for an event type or schema
// version this build cannot read. It is an operational error (a stream written
// by a newer release, or a corrupted row), never a client error.
var ErrUnknownEvent = errors.New("unknown event")

// Validation codes are part of the public contract: clients branch on them,
// so they never change once published.
const (
	CodeRequired          = "required"
	CodeInvalidFormat     = "invalid_format"
	CodeInvalidValue      = "invalid_value" // not one of an enum's values
	CodeTooLong           = "too_long"
	CodeMustBeNonNegative = "must_be_non_negative"
	CodeTooPrecise        = "too_precise"
)

// FieldError is one problem with one field of a request, in the shape of an
// element of the contract's "details" array.
type FieldError struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ValidationError reports every problem found in a request at once, so a
// client can fix a form in one round trip instead of one field per attempt.
type ValidationError struct {
	Details []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("validation failed")
	for i, d := range e.Details {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(d.Message) // messages name their field
	}
	return b.String()
}

// problems accumulates field errors while a command is checked.
type problems []FieldError

func (p *problems) add(field, code, message string) {
	*p = append(*p, FieldError{Field: field, Code: code, Message: message})
}

// err returns nil when nothing was reported, so callers can write
// `if err := p.err(); err != nil`.
func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Details: p}
}
