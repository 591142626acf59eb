package driver

// Webhooks stores subscriptions, deliveries with their leases and
// attempts, and the event feed.
type Webhooks interface{}
