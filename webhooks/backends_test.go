package webhooks_test

import (
	"testing"

	"github.com/salesos/salesos/internal/testdb"
)

// The webhook suite again with EventStoreDB as the event store.
func TestWebhookSuiteOnEventStoreDB(t *testing.T) {
	testdb.RerunOn(t, "esdb")
}

// The webhook suite again on the embedded default: the event store, the
// query tables and the webhook state in one SQLite file.
func TestWebhookSuiteOnSQLite(t *testing.T) {
	testdb.RerunOn(t, "sqlite")
}
