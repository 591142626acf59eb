-- Deliveries are claimed webhook by webhook, oldest due first, and each
-- webhook's unexpired leases are counted on every claim (see
-- postgres/0008_webhook_fair_claims.sql).
CREATE INDEX webhook_deliveries_due_by_webhook ON webhook_deliveries (webhook_id, next_attempt_at) WHERE status = 'pending';
DROP INDEX webhook_deliveries_leased;
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (webhook_id, lease_expires_at) WHERE lease_owner IS NOT NULL;
