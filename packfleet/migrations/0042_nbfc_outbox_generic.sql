-- nbfc_outbox as an outbox of packfleet/outbox.py: the columns every outbox table has (its claim
-- and lease, the sender's name and the remote's id, an optional dedupe key, a deadline).
ALTER TABLE nbfc_outbox DROP CONSTRAINT nbfc_outbox_status_check;
ALTER TABLE nbfc_outbox RENAME COLUMN last_error TO error;
ALTER TABLE nbfc_outbox RENAME COLUMN external_id TO provider_message_id;   -- the lender's id
ALTER TABLE nbfc_outbox
    ADD CONSTRAINT nbfc_outbox_status_check CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    ADD COLUMN last_attempt_at timestamptz,
    ADD COLUMN dedupe_key text,
    ADD COLUMN provider text,
    ADD COLUMN send_before timestamptz;
CREATE UNIQUE INDEX nbfc_outbox_dedupe_key ON nbfc_outbox (dedupe_key) WHERE dedupe_key IS NOT NULL;
DROP INDEX nbfc_outbox_due_idx;
CREATE INDEX nbfc_outbox_due_idx ON nbfc_outbox (next_attempt_at) WHERE status IN ('queued', 'sending');
