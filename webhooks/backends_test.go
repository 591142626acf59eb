package webhooks_test

import (
	"testing"

	"github.com/salesos/salesos/internal/apptest"
)

// The webhook suite again with EventStoreDB as the event store.
func TestWebhookSuiteOnEventStoreDB(t *testing.T) {
	apptest.RerunOn(t, "esdb")
}
