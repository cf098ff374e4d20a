-- People and organisations. Money tables (finance, NBFC) come in later migrations.
CREATE TABLE dealers (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    phone       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE consumers (
    id              bigserial PRIMARY KEY,
    dealer_id       bigint NOT NULL REFERENCES dealers (id),
    name            text NOT NULL,
    phone           text NOT NULL,
    pan             text CHECK (pan ~ '^[A-Z]{5}[0-9]{4}[A-Z]$'),
    aadhaar_enc     bytea,          -- Fernet token; never stored or returned in clear
    aadhaar_last4   text CHECK (aadhaar_last4 ~ '^[0-9]{4}$'),
    kyc_status      text NOT NULL DEFAULT 'pending'
                    CHECK (kyc_status IN ('pending', 'verified', 'rejected')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dealer_id, phone)
);

CREATE TABLE users (
    id           bigserial PRIMARY KEY,
    phone        text NOT NULL UNIQUE CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'dealer', 'consumer', 'technician', 'nbfc')),
    dealer_id    bigint REFERENCES dealers (id),
    consumer_id  bigint REFERENCES consumers (id),
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (role <> 'dealer' OR dealer_id IS NOT NULL),
    CHECK (role <> 'consumer' OR consumer_id IS NOT NULL)
);

-- One entity for the spec's "battery" and "battery pack": serial_number is the asset tag.
CREATE TABLE batteries (
    id                bigserial PRIMARY KEY,
    serial_number     text NOT NULL UNIQUE CHECK (serial_number ~ '^[A-Za-z0-9_-]{1,64}$'),
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'inactive', 'maintenance')),
    health_score      numeric(5, 2) NOT NULL DEFAULT 100 CHECK (health_score BETWEEN 0 AND 100),
    dealer_id         bigint REFERENCES dealers (id),
    owner_id          bigint REFERENCES consumers (id),
    -- asset fields of the battery-pack API
    company           text,
    status_label      text,
    model             text,
    manufacturer_name text,
    location          text,
    warranty_months   integer CHECK (warranty_months >= 0),
    cell_chemistry    text,
    nominal_voltage   text,
    nominal_capacity  text,
    bms_type          text,
    cell_type         text,
    casing            text,
    -- remote control: what the cloud wants and what the device last said
    desired_enabled   boolean NOT NULL DEFAULT true,
    desired_spec      text NOT NULL DEFAULT 'both' CHECK (desired_spec IN ('charging', 'discharging', 'both')),
    reported_enabled  boolean,
    reported_spec     text CHECK (reported_spec IN ('charging', 'discharging', 'both')),
    reported_at       timestamptz,
    firmware          text,
    online            boolean NOT NULL DEFAULT false,
    last_seen_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz
);
CREATE INDEX batteries_dealer_idx ON batteries (dealer_id) WHERE deleted_at IS NULL;
CREATE INDEX batteries_owner_idx ON batteries (owner_id) WHERE owner_id IS NOT NULL;

-- Newest reading per battery, upserted by ingest only when newer: "latest" never scans telemetry.
CREATE TABLE battery_latest (
    battery_id   bigint PRIMARY KEY REFERENCES batteries (id),
    ts           timestamptz NOT NULL,
    voltage      real NOT NULL,
    current      real NOT NULL,
    soc          real NOT NULL,
    temperature  real,
    lat          double precision,
    lon          double precision,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Messages ingest or control could not accept: kept, counted, never silently dropped.
CREATE TABLE dead_letters (
    id            bigserial PRIMARY KEY,
    topic         text NOT NULL,
    reason        text NOT NULL,
    detail        text,
    received_at   timestamptz NOT NULL DEFAULT now(),
    payload       bytea NOT NULL,       -- first 64 KiB
    payload_size  integer NOT NULL
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);

-- Remote enable/disable commands, one row each; see ARCHITECTURE.md for the lifecycle.
CREATE TABLE commands (
    id             uuid PRIMARY KEY,
    battery_id     bigint NOT NULL REFERENCES batteries (id),
    action         text NOT NULL CHECK (action IN ('enable', 'disable')),
    spec           text NOT NULL DEFAULT 'both' CHECK (spec IN ('charging', 'discharging', 'both')),
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'sent', 'delivered', 'succeeded', 'failed',
                                     'expired', 'cancelled')),
    reason         text NOT NULL,             -- why it was asked (operator text or 'emi_overdue')
    requested_by   bigint REFERENCES users (id),
    source         text NOT NULL DEFAULT 'api',
    battery_status text CHECK (battery_status IN ('active', 'inactive', 'maintenance')),
    status_label   text,
    attempts       integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    error          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    delivered_at   timestamptz,
    finished_at    timestamptz,               -- succeeded, failed, expired or cancelled
    expires_at     timestamptz NOT NULL,
    device_enabled boolean                    -- what the device reported in its final ack
);
CREATE INDEX commands_battery_idx ON commands (battery_id, created_at DESC);
CREATE INDEX commands_open_idx ON commands (next_attempt_at)
    WHERE status IN ('queued', 'sent', 'delivered');

-- Audit trail: one row per command transition, with who and why.
CREATE TABLE command_events (
    id          bigserial PRIMARY KEY,
    command_id  uuid NOT NULL REFERENCES commands (id),
    status      text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,      -- 'user:<id>', 'control', 'device'
    detail      text
);
CREATE INDEX command_events_command_idx ON command_events (command_id, at);
