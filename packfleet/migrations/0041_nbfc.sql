-- NBFC integration: collection reports, the outbox of calls to lenders' APIs, and webhook events.

-- A dealer's collection report for one day, sent to one lender (once: a second submission of the
-- same day answers the first).
CREATE TABLE nbfc_collection_reports (
    id               bigserial PRIMARY KEY,
    dealer_id        bigint NOT NULL REFERENCES dealers (id),
    nbfc_id          bigint NOT NULL REFERENCES nbfc_lenders (id),
    report_date      date NOT NULL,
    collection_data  jsonb NOT NULL,     -- computed from the recorded payments
    nbfc_response    jsonb,              -- the lender's answer, once delivered
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dealer_id, nbfc_id, report_date)
);

-- Calls to a lender's API, written in the business transaction and sent by a worker with retries.
-- The idempotency key is sent with every attempt, so a retry never creates a second object at the
-- lender. external_id is the lender's id for what was created.
CREATE TABLE nbfc_outbox (
    id               bigserial PRIMARY KEY,
    nbfc_id          bigint NOT NULL REFERENCES nbfc_lenders (id),
    kind             text NOT NULL CHECK (kind IN ('application', 'collection_report')),
    application_id   bigint REFERENCES finance_applications (id),
    report_id        bigint REFERENCES nbfc_collection_reports (id),
    idempotency_key  text NOT NULL UNIQUE,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    response         jsonb,
    external_id      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    CHECK ((kind = 'application') = (application_id IS NOT NULL)),
    CHECK ((kind = 'collection_report') = (report_id IS NOT NULL))
);
CREATE INDEX nbfc_outbox_due_idx ON nbfc_outbox (next_attempt_at) WHERE status = 'queued';

-- Webhook events from lenders, one row per event key: the same event twice is processed once and
-- answered as the first time (including a rejected transition).
CREATE TABLE nbfc_webhook_events (
    id              bigserial PRIMARY KEY,
    nbfc_id         bigint NOT NULL REFERENCES nbfc_lenders (id),
    event_key       text NOT NULL,
    application_id  bigint REFERENCES finance_applications (id),
    status          text,
    outcome         text NOT NULL CHECK (outcome IN ('processed', 'rejected')),
    http_status     integer NOT NULL,
    response        jsonb NOT NULL,
    body            jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (nbfc_id, event_key)
);

-- Signatures already accepted, kept a little longer than the timestamp tolerance: the very same
-- signed request sent again is a replay (401).
CREATE TABLE nbfc_webhook_nonces (
    nbfc_id    bigint NOT NULL REFERENCES nbfc_lenders (id),
    signature  text NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (nbfc_id, signature)
);
CREATE INDEX nbfc_webhook_nonces_seen_idx ON nbfc_webhook_nonces (seen_at);
