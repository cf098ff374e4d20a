-- Control service: per-battery ordering, cancellation with a reason, retries, bulk rollouts.

-- Bulk rollouts: one row per request; its commands point back to it for the summary.
CREATE TABLE command_bulks (
    id             uuid PRIMARY KEY,
    action         text NOT NULL CHECK (action IN ('enable', 'disable')),
    spec           text NOT NULL CHECK (spec IN ('charging', 'discharging', 'both')),
    battery_status text CHECK (battery_status IN ('active', 'inactive', 'maintenance')),
    reason         text NOT NULL,
    requested_by   bigint REFERENCES users (id),
    dealer_id      bigint REFERENCES dealers (id),   -- the requesting dealer's scope; NULL for admin
    selector       jsonb NOT NULL,                   -- the serials or the filter, as asked
    total          integer NOT NULL CHECK (total >= 0),
    rate_per_s     double precision NOT NULL CHECK (rate_per_s > 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE commands
    -- Creation order: created_at ties inside one transaction, seq never does.
    ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY,
    ADD COLUMN last_sent_at timestamptz,
    ADD COLUMN cancel_reason text,
    ADD COLUMN cancelled_by text,
    ADD COLUMN superseded_by uuid REFERENCES commands (id),
    ADD COLUMN bulk_id uuid REFERENCES command_bulks (id),
    -- The battery's desired state before this command, restored if an operator cancels it.
    ADD COLUMN prev_desired_enabled boolean,
    ADD COLUMN prev_desired_spec text,
    ADD COLUMN prev_status text;

CREATE UNIQUE INDEX commands_seq_key ON commands (seq);
-- The head of each battery's queue: its oldest open command.
CREATE INDEX commands_open_battery_idx ON commands (battery_id, seq)
    WHERE status IN ('queued', 'sent', 'delivered');
CREATE INDEX commands_open_expiry_idx ON commands (expires_at)
    WHERE status IN ('queued', 'sent', 'delivered');
CREATE INDEX commands_bulk_idx ON commands (bulk_id) WHERE bulk_id IS NOT NULL;
