package eventstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	sqlitedriver "modernc.org/sqlite"
)

// ErrUnavailable is matched (errors.Is) by errors that mean "a database or
// the event store cannot be reached right now": the request did not fail
// because of what it asked for, and the same request may succeed once the
// dependency is back. The API answers them 503 with Retry-After.
var ErrUnavailable = errors.New("unavailable")

// IsUnavailable is the one classifier of dependency outages, for the event
// store's own errors and for any database error from the query side or the
// webhook store. It knows, without string matching where a type exists:
//   - ErrUnavailable itself (the backends wrap what they classified);
//   - lost or refused connections: net errors (dial, reset, timeouts),
//     ECONNREFUSED/ECONNRESET/EPIPE/ECONNABORTED, io.ErrUnexpectedEOF,
//     driver.ErrBadConn, sql.ErrConnDone, pgconn's connect errors;
//   - PostgreSQL refusing work for operational reasons: SQLSTATE class 08
//     (connection exception), 57P01/57P02/57P03 (terminating connection,
//     crash shutdown, cannot connect now), 53300 (too many connections);
//   - SQLite SQLITE_BUSY and SQLITE_LOCKED (the busy timeout passed while
//     another connection or process held the lock).
//
// Context errors are not outages by themselves: a caller that gave up is
// not told the database is down (the API maps DeadlineExceeded on its own).
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return unavailableSQLState(pgErr.Code)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var se *sqlitedriver.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED (and their extended codes)
			return true
		}
		return false
	}
	var ne net.Error
	// context.DeadlineExceeded is a net.Error too (a timeout).
	if errors.As(err, &ne) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	// pgx reports use of a connection it already closed (the server ended
	// it) with an untyped error.
	return strings.HasSuffix(err.Error(), "conn closed")
}

func unavailableSQLState(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"):
		return true
	case code == "57P01", code == "57P02", code == "57P03", code == "53300":
		return true
	}
	return false
}

// Unavailable wraps err with ErrUnavailable when IsUnavailable says so, and
// returns it unchanged otherwise.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || !IsUnavailable(err) {
		return err
	}
	return &unavailableError{err}
}

type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() []error {
	return []error{ErrUnavailable, e.err}
}
