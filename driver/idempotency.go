package driver

// Idempotency stores idempotency keys, their leases and the responses
// replayed for them.
type Idempotency interface{}
