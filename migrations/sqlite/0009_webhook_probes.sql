-- See postgres/0009_webhook_probes.sql.
ALTER TABLE webhooks ADD COLUMN probe_after TIMESTAMP;
DROP INDEX webhook_deliveries_due;
-- The fan-out leaves webhook_deliveries.payload empty from here on (see
-- the PostgreSQL migration).
