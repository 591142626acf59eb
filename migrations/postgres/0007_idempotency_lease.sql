-- An in-progress idempotency key is held by a lease, not forever: a process
-- killed mid-request (or one whose release or stored response failed to
-- write) left its key in_progress, and every retry got 409 for 24 hours.
-- After lease_until a retry with the same key and body takes the request
-- over; claim_token tells the current owner apart, so a stale first
-- attempt that finishes late cannot complete or release the new owner's
-- claim. Keys claimed before this migration have no lease_until: they count
-- as leased from created_at for the store's lease duration.
ALTER TABLE idempotency_keys ADD COLUMN lease_until TIMESTAMPTZ;
ALTER TABLE idempotency_keys ADD COLUMN claim_token TEXT NOT NULL DEFAULT '';
