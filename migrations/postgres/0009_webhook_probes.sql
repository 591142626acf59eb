-- A failing webhook is probed at most once per first retry step: its next
-- attempt, of whichever delivery, waits until probe_after (NULL while it
-- is healthy). See webhooks.Policy.Next.
ALTER TABLE webhooks ADD COLUMN probe_after TIMESTAMPTZ;

-- Nothing looks for "the oldest due deliveries of all webhooks" any more:
-- claims go webhook by webhook (0008), and the pending count in /metrics is
-- answered by webhook_deliveries_due_by_webhook as well. Every lease and
-- every recorded attempt rewrote an entry of this index for nothing.
DROP INDEX webhook_deliveries_due;

-- From here on the fan-out leaves webhook_deliveries.payload empty: the
-- body is the event feed's row with the same event_id, stored once rather
-- than once per webhook (webhooks.feedPayload). Deliveries made before
-- keep their copy, and test deliveries have one of their own.

-- The fan-out inserts deliveries only for webhooks it has just read in the
-- same transaction, and webhooks are never deleted (deleted_at marks them),
-- so the foreign key guarded nothing. It cost a trigger and a KEY SHARE
-- lock on the webhook for every delivery inserted, and since dispatchers
-- hold NO KEY UPDATE locks on the same rows all the time, each of those
-- locks became a multixact: most of the fan-out's time went there.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_webhook_id_fkey;
