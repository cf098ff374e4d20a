-- One-time passwords for phone login. Only a keyed hash of the code is stored.
CREATE TABLE otp_codes (
    id           bigserial PRIMARY KEY,
    phone        text NOT NULL,
    user_id      bigint REFERENCES users (id),   -- NULL for unknown phones (same answer, no SMS)
    code_hash    bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,     -- tries so far, right or wrong
    consumed_at  timestamptz,
    superseded   boolean NOT NULL DEFAULT false  -- a newer code was sent to the phone
);
CREATE INDEX otp_codes_phone_idx ON otp_codes (phone, created_at DESC);

-- Every SMS the API sends, whatever the provider: the development `console` provider's outbox,
-- and the delivery record of real providers (the messaging issue adds those).
CREATE TABLE sms_outbox (
    id                   bigserial PRIMARY KEY,
    provider             text NOT NULL,
    to_phone             text NOT NULL,
    body                 text NOT NULL,
    kind                 text NOT NULL DEFAULT 'general',   -- 'otp', 'battery_status', ...
    status               text NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'sent', 'failed')),
    provider_message_id  text,
    error                text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    sent_at              timestamptz
);
CREATE INDEX sms_outbox_to_idx ON sms_outbox (to_phone, created_at DESC);
