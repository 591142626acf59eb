package apptest

import (
	"os"
	"testing"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/eventstore/esdbtest"
)

// BackendEnv selects the event store the API suites run on:
// "postgres" (default) or "esdb" (an in-process EventStoreDB test server
// per server). RunOnEveryBackend re-runs a suite with each.
const BackendEnv = "SALESOS_TEST_EVENTSTORE"

// Backend is the event store this test binary runs on.
func Backend() string {
	if b := os.Getenv(BackendEnv); b != "" {
		return b
	}
	return "postgres"
}

// useBackend points cfg at the selected event store.
func useBackend(t testing.TB, cfg *app.Config) {
	switch Backend() {
	case "postgres":
	case "esdb":
		srv := esdbtest.Start(t)
		cfg.EventStoreURL = srv.ConnString()
	default:
		t.Fatalf("%s=%q: want postgres or esdb", BackendEnv, Backend())
	}
}
