package projections

import (
	"context"
	"database/sql"
	sqldriver "database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// Transient marks err as a passing problem, never the fault of the events
// being applied: a projection returns it for failures of what it reads
// besides its transaction (the event store, say), so that the batch is
// retried instead of its events parked.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &transientError{err}
}

type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// errConnectionLost marks a failure after which the database did not
// answer: transient, whatever the original error said.
var errConnectionLost = errors.New("database connection lost")

// transient reports whether err is a passing problem of the database or
// the connection (retry the batch later) rather than something about the
// events (isolate and park).
func transient(err error) bool {
	if err == nil {
		return false
	}
	var marked *transientError
	if errors.As(err, &marked) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, errConnectionLost) || errors.Is(err, errRebuilt) ||
		errors.Is(err, sqldriver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, sql.ErrTxDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code[:2] {
		case "08", // connection exception
			"25", // invalid transaction state (an earlier failure on this connection)
			"40", // serialization failure, deadlock
			"53", // insufficient resources (disk full, too many connections)
			"57", // operator intervention: shutdown, statement timeout, cancel
			"58", // system error (I/O)
			"XX": // internal error
			return true
		}
		return pg.Code == "55P03" // lock_not_available
	}
	var lite *sqlite.Error
	if errors.As(err, &lite) {
		switch lite.Code() & 0xff {
		case 5, 6, // SQLITE_BUSY, SQLITE_LOCKED
			10, 13, 14, 15: // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PROTOCOL
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	// pgx reports a connection it closed after an error as a plain error.
	return strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "conn busy")
}

// safeApply runs fn, turning a panic into an error (a panicking fold is a
// poison event like any other).
func safeApply(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return fn()
}
