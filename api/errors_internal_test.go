package api

import (
	"database/sql/driver"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/salesos/salesos/eventstore"
)

// Every way a dependency outage reaches a handler leaves as 503
// unavailable with Retry-After, never as a 500.
func TestOutagesMapTo503(t *testing.T) {
	outages := map[string]error{
		"connection refused":     fmt.Errorf("event store: connect: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}),
		"connection reset":       fmt.Errorf("read: %w", syscall.ECONNRESET),
		"terminating connection": &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"},
		"cannot connect now":     &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"},
		"connection exception":   &pgconn.PgError{Code: "08006"},
		"bad connection":         fmt.Errorf("query: %w", driver.ErrBadConn),
		"event store sentinel":   fmt.Errorf("append: %w", eventstore.ErrUnavailable),
	}
	for name, err := range outages {
		e := toError(err)
		if e.Status != http.StatusServiceUnavailable || e.Code != "unavailable" || e.RetryAfter <= 0 {
			t.Errorf("%s: %d %s (Retry-After %d), want 503 unavailable with Retry-After", name, e.Status, e.Code, e.RetryAfter)
		}
	}
	// A database error that is about the query, not the connection, stays
	// an internal error.
	if e := toError(&pgconn.PgError{Code: "42P01", Message: "relation does not exist"}); e.Status != http.StatusInternalServerError {
		t.Errorf("undefined table: %d, want 500", e.Status)
	}
}
