-- Idempotency leases (SQLite dialect; see postgres/0007_idempotency_lease.sql).
ALTER TABLE idempotency_keys ADD COLUMN lease_until TIMESTAMP;
ALTER TABLE idempotency_keys ADD COLUMN claim_token TEXT NOT NULL DEFAULT '';
