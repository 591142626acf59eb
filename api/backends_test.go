package api_test

import (
	"testing"

	"github.com/salesos/salesos/internal/apptest"
)

// The whole API suite again with EventStoreDB as the event store (an
// in-process test server speaking its gRPC protocol).
func TestAPISuiteOnEventStoreDB(t *testing.T) {
	apptest.RerunOn(t, "esdb")
}
