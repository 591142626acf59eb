package idempotency

import (
	"testing"

	"github.com/salesos/salesos/internal/testdb"
)

// The suite again on SQLite (the embedded default).
func TestIdempotencySuiteOnSQLite(t *testing.T) {
	testdb.RerunOn(t, "sqlite")
}
