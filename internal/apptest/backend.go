package apptest

import (
	"testing"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/eventstore/esdbtest"
	"github.com/salesos/salesos/internal/testdb"
)

// BackendEnv selects the backend the suites run on: "postgres" (default),
// "esdb" (an in-process EventStoreDB test server per server as the event
// store) or "sqlite" (the embedded default: one SQLite file per server).
// RerunOn re-runs a suite with another.
const BackendEnv = testdb.BackendEnv

// Backend is the backend this test binary runs on.
func Backend() string { return testdb.Backend() }

// useBackend points cfg at the selected event store.
func useBackend(t testing.TB, cfg *app.Config) {
	switch Backend() {
	case "postgres", "sqlite":
		// The database URL (a schema, or a sqlite:// file) selects it.
	case "esdb":
		srv := esdbtest.Start(t)
		cfg.EventStoreURL = srv.ConnString()
	default:
		t.Fatalf("%s=%q: want postgres, esdb or sqlite", BackendEnv, Backend())
	}
}
