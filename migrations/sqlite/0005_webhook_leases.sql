-- A failing webhook's in-flight delivery is found without scanning its
-- backlog (see postgres/0005_webhook_leases.sql).
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (webhook_id) WHERE lease_owner IS NOT NULL;
