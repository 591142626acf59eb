-- Finding a failing webhook's in-flight delivery (the dispatcher sends one
-- at a time to a failing endpoint) must not scan its whole backlog: leases
-- are few, and cleared when the attempt is recorded.
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (webhook_id) WHERE lease_owner IS NOT NULL;
