// Package domain holds the rules of SalesOS: what a lead and a deal are,
// which changes to them are allowed, and the events that record those
// changes. It uses the standard library only and does no I/O, so every rule
// can be tested with plain values.
//
// Commands are decided, never applied directly. A decision such as
// CreateLead or (Lead).Update checks the request against the current state
// and returns the events to append, or an error: a *ValidationError listing
// every problem at once, ErrNotFound, or ErrConflict wrapped with the reason.
// State is rebuilt by folding a stream's events with Apply, which depends on
// nothing but the event and its Metadata, so replaying a stream always gives
// the same record, closed_at and timestamps included.
//
// Events are the storage and webhook format. Their type names are explicit
// constants and their payloads carry a schema version; DecodeEvent reads any
// version ever written (see registry), so stored streams stay readable
// across releases. Money is an exact decimal (Amount) that never becomes a
// float. Lead and Deal marshal to exactly the public JSON of the API
// contract, so the API returns them as they are.
package domain
