-- Deliveries are claimed webhook by webhook, oldest due first (see
-- postgres/0008_webhook_fair_claims.sql).
CREATE INDEX webhook_deliveries_due_by_webhook ON webhook_deliveries (webhook_id, next_attempt_at) WHERE status = 'pending';
