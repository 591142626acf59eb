package api_test

import (
	"testing"

	"github.com/salesos/salesos/internal/testdb"
)

// The whole API suite again with EventStoreDB as the event store (an
// in-process test server speaking its gRPC protocol).
func TestAPISuiteOnEventStoreDB(t *testing.T) {
	testdb.RerunOn(t, "esdb")
}

// The whole API suite again on the embedded default: event store, query
// tables and webhook state in one SQLite file per server.
func TestAPISuiteOnSQLite(t *testing.T) {
	testdb.RerunOn(t, "sqlite")
}
