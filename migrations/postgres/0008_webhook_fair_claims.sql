-- The dispatcher claims deliveries webhook by webhook (a fair share each,
-- never more than the webhook's own limit in flight), so it looks for "the
-- oldest due deliveries of this webhook" rather than "the oldest due
-- deliveries of all": one probe per webhook, however long another
-- webhook's backlog is.
CREATE INDEX webhook_deliveries_due_by_webhook ON webhook_deliveries (webhook_id, next_attempt_at) WHERE status = 'pending';

-- And it counts each webhook's unexpired leases on every claim. With the
-- expiry in the key the count is answered from this small index alone
-- (leases are few and cleared when an attempt is recorded); the planner
-- preferred walking a webhook's whole list of deliveries over the old
-- index on webhook_id alone.
DROP INDEX webhook_deliveries_leased;
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (webhook_id, lease_expires_at) WHERE lease_owner IS NOT NULL;
