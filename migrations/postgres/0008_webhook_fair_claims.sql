-- The dispatcher claims deliveries webhook by webhook (a fair share each,
-- never more than the webhook's own limit in flight), so it looks for "the
-- oldest due deliveries of this webhook" rather than "the oldest due
-- deliveries of all": one probe per webhook, however long another
-- webhook's backlog is.
CREATE INDEX webhook_deliveries_due_by_webhook ON webhook_deliveries (webhook_id, next_attempt_at) WHERE status = 'pending';
