-- sms_outbox becomes an outbox in the sense of packfleet/outbox.py: a row is written in the
-- business transaction and a worker delivers it (claim, send, record, retry with backoff). The
-- columns every outbox table has are listed in that module's docstring (`table_ddl`).

-- Rows the old synchronous sender left 'queued' were never handed over (the process stopped
-- between the insert and the provider's answer); a worker must not send them now, late.
UPDATE sms_outbox SET status = 'failed', error = 'left queued before the outbox worker existed'
WHERE status = 'queued';

ALTER TABLE sms_outbox DROP CONSTRAINT sms_outbox_status_check;
ALTER TABLE sms_outbox
    ADD CONSTRAINT sms_outbox_status_check CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    ALTER COLUMN provider DROP NOT NULL,                -- the sender that took it (set at each claim)
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,     -- claims so far; also the claim's fencing token
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),  -- due time, or the claim's lease end
    ADD COLUMN last_attempt_at timestamptz,
    -- handed to the provider with every attempt, so a re-send after a crash is a no-op there
    ADD COLUMN idempotency_key text NOT NULL DEFAULT gen_random_uuid()::text,
    ADD COLUMN dedupe_key text,                         -- the caller's key: queued twice, stored once
    ADD COLUMN send_before timestamptz,                 -- not sent by then: failed (a login code's expiry)
    -- SMS only:
    ADD COLUMN secret boolean NOT NULL DEFAULT false,   -- digits masked once finished (login codes)
    ADD COLUMN consumer_id bigint REFERENCES consumers (id),
    ADD COLUMN requested_by bigint REFERENCES users (id);

CREATE UNIQUE INDEX sms_outbox_idempotency_key ON sms_outbox (idempotency_key);
CREATE UNIQUE INDEX sms_outbox_dedupe_key ON sms_outbox (dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX sms_outbox_due ON sms_outbox (next_attempt_at) WHERE status IN ('queued', 'sending');

-- A secret message's text is needed until it is delivered or given up, then only its shape: the
-- digits are masked, except for the development `console` provider, whose outbox and log are where
-- a developer reads a login code.
CREATE FUNCTION sms_outbox_mask_secret() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.secret AND NEW.status IN ('sent', 'failed') AND NEW.provider IS DISTINCT FROM 'console' THEN
        NEW.body := regexp_replace(NEW.body, '[0-9]', 'X', 'g');
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER sms_outbox_mask_secret BEFORE INSERT OR UPDATE OF status ON sms_outbox
    FOR EACH ROW EXECUTE FUNCTION sms_outbox_mask_secret();
