package webhooks

import "time"

// The statements on the webhook tables are the driver's (driver.Webhooks,
// one implementation per database); this package decides what to run and
// when.

// dbNow is the time statements store: both databases keep microseconds, so
// the value in Go is the one read back.
func dbNow() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
