package projections

import (
	"testing"

	"github.com/salesos/salesos/internal/testdb"
)

// The whole suite again on SQLite (one file per test, the embedded
// default).
func TestProjectionsSuiteOnSQLite(t *testing.T) {
	testdb.RerunOn(t, "sqlite")
}
