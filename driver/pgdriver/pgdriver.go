// Package pgdriver is the PostgreSQL implementation of driver.Driver.
package pgdriver

import (
	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/internal/webhooksql"
	"github.com/salesos/salesos/driver/sqlshared"
)

// Driver implements driver.Driver on PostgreSQL (database/sql driver
// "pgx"). It holds no state: every operation runs on the Executor it is
// given.
type Driver struct {
	// The webhook statements both databases share.
	webhooksql.Shared[webhookDialect]
	// The projection and idempotency statements that are the same on
	// every database.
	sqlshared.Statements
}

var _ driver.Driver = Driver{}

// New returns the PostgreSQL driver.
func New() Driver { return Driver{} }

// Name implements driver.Driver.
func (Driver) Name() string { return "postgres" }
