package webhooks

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/salesos/salesos/internal/dialect"
)

// The webhook tables live in PostgreSQL or in the SQLite file (see
// migrations/sqlite/0003_webhooks.sql). Most statements are shared; the
// helpers below cover what differs: pattern lists (TEXT[] there, a JSON
// array in TEXT here) and "one of these ids" parameters.

// eventsColumn selects webhooks.events as a JSON array on both (stringList
// scans it).
func eventsColumn(db dialect.DriverNamer) string {
	if dialect.IsSQLite(db) {
		return `events`
	}
	return `to_json(events) AS events`
}

// webhookColumns selects a Webhook.
func webhookColumns(db dialect.DriverNamer) string {
	return `id, url, ` + eventsColumn(db) + `, description, active, consecutive_failures, deactivated_at, deactivation_reason, created_at, updated_at`
}

// eventsArg is the value stored in webhooks.events.
func eventsArg(db dialect.DriverNamer, patterns []string) (any, error) {
	if !dialect.IsSQLite(db) {
		return patterns, nil
	}
	return jsonList(patterns)
}

// inList returns the condition "col is one of list", list being bound as
// parameter n, and the argument to bind.
func inList(db dialect.DriverNamer, col string, n int, list []string) (string, any, error) {
	if !dialect.IsSQLite(db) {
		return fmt.Sprintf(`%s = ANY($%d)`, col, n), list, nil
	}
	raw, err := jsonList(list)
	return fmt.Sprintf(`%s IN (SELECT value FROM json_each($%d))`, col, n), raw, err
}

func jsonList(list []string) (string, error) {
	if list == nil {
		list = []string{}
	}
	raw, err := json.Marshal(list)
	return string(raw), err
}

// dbNow is the time statements store: both databases keep microseconds, so
// the value in Go is the one read back.
func dbNow() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
