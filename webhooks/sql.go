package webhooks

import (
	"time"

	"github.com/salesos/salesos/internal/dialect"
)

// The webhook tables live in PostgreSQL or in the SQLite file (see
// migrations/sqlite/0003_webhooks.sql). Most statements are shared; the
// helpers below cover what differs for pattern lists (TEXT[] there, a JSON
// array in TEXT here); "one of these ids" parameters use dialect.InList.

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
	return dialect.JSONList(patterns)
}

// dbNow is the time statements store: both databases keep microseconds, so
// the value in Go is the one read back.
func dbNow() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
