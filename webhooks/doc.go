// Package webhooks delivers every lead and deal event to the organizations'
// HTTP endpoints, and keeps the organization-scoped event feed.
//
// Three parts, each restartable on its own:
//   - FanOut, a projection on the projections' Watermill router: for every
//     event it writes the feed row and one pending delivery per matching
//     active webhook, in the transaction that moves its checkpoint. So an
//     event is fanned out exactly once, whatever crashes.
//   - Dispatcher: claims due deliveries (an expiring lease taken under
//     FOR UPDATE SKIP LOCKED on PostgreSQL, or in SQLite's single-writer
//     transaction, so instances can run side by side), signs them per
//     Standard Webhooks, sends them through an SSRF-guarded Sender, and
//     records each attempt with the next retry time or the final status.
//     Delivery is at least once; the webhook-id header is the event id and
//     never changes across retries, so receivers can de-duplicate.
//   - Store: the subscriptions, deliveries and feed as the API shows them.
//
// Retry state lives only in the database; nothing is lost on a restart.
//
// The tables live in PostgreSQL or, in the embedded mode, in the SQLite
// file next to the events (migrations/sqlite/0003_webhooks.sql). This
// package decides what to store and when; the statements are the driver's
// (driver.Webhooks, one implementation per database), and times are passed
// in from Go.
package webhooks
