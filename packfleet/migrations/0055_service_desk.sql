-- Service desk: technicians, tickets and every change of a ticket (api/service/).

-- The service profile of a user whose role is `technician` (the id is the user's).
CREATE TABLE technicians (
    user_id           bigint PRIMARY KEY REFERENCES users (id),
    skills            text[] NOT NULL DEFAULT '{}',
    rating            numeric(2, 1) NOT NULL DEFAULT 0 CHECK (rating BETWEEN 0 AND 5),
    experience_years  integer NOT NULL DEFAULT 0 CHECK (experience_years BETWEEN 0 AND 60),
    location          text,                         -- home base, by name
    latitude          double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude         double precision CHECK (longitude BETWEEN -180 AND 180),
    status            text NOT NULL DEFAULT 'available'
                      CHECK (status IN ('available', 'off_duty', 'on_leave')),
    -- Tickets assigned or in progress: kept exact by the trigger below, in the writing transaction.
    current_load      integer NOT NULL DEFAULT 0 CHECK (current_load >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((latitude IS NULL) = (longitude IS NULL))
);

CREATE TABLE service_tickets (
    id                bigserial PRIMARY KEY,
    battery_id        bigint NOT NULL REFERENCES batteries (id),
    dealer_id         bigint REFERENCES dealers (id),     -- the battery's dealer (kept by a trigger)
    consumer_id       bigint REFERENCES consumers (id),   -- the battery's owner when it was opened
    issue_category    text NOT NULL
                      CHECK (issue_category IN ('performance', 'charging', 'mechanical', 'electrical', 'other')),
    description       text NOT NULL,
    location          text,
    latitude          double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude         double precision CHECK (longitude BETWEEN -180 AND 180),
    priority          text NOT NULL DEFAULT 'medium' CHECK (priority IN ('low', 'medium', 'high', 'critical')),
    status            text NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'assigned', 'in_progress', 'resolved', 'closed')),
    assigned_to       bigint REFERENCES users (id),
    resolution_notes  text,
    parts_used        text,
    labor_hours       numeric(6, 2) CHECK (labor_hours >= 0),
    customer_rating   smallint CHECK (customer_rating BETWEEN 1 AND 5),
    customer_feedback text,
    source            text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'health')),
    auto_kind         text,        -- what the health job opened it for: low_health, over_temperature, ...
    opened_by         bigint REFERENCES users (id),
    sla_due_at        timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    assigned_at       timestamptz,
    started_at        timestamptz,
    resolved_at       timestamptz,
    closed_at         timestamptz,
    CHECK ((latitude IS NULL) = (longitude IS NULL)),
    -- Only an open ticket has nobody; a reopened ticket is open and unassigned again.
    CHECK ((status = 'open') = (assigned_to IS NULL)),
    CHECK ((source = 'health') = (auto_kind IS NOT NULL))
);
CREATE INDEX service_tickets_dealer_status_idx ON service_tickets (dealer_id, status);
CREATE INDEX service_tickets_dealer_created_idx ON service_tickets (dealer_id, created_at);
CREATE INDEX service_tickets_technician_idx ON service_tickets (assigned_to, status)
    WHERE assigned_to IS NOT NULL;
CREATE INDEX service_tickets_battery_idx ON service_tickets (battery_id, created_at DESC);
CREATE INDEX service_tickets_consumer_idx ON service_tickets (consumer_id, created_at DESC)
    WHERE consumer_id IS NOT NULL;
CREATE INDEX service_tickets_active_idx ON service_tickets (created_at DESC)
    WHERE status IN ('open', 'assigned', 'in_progress');
-- The health job opens at most one active ticket per battery and reason, however often it runs
-- and from however many processes (its INSERT ... ON CONFLICT names this index).
CREATE UNIQUE INDEX service_tickets_auto_active_idx ON service_tickets (battery_id, auto_kind)
    WHERE auto_kind IS NOT NULL AND status IN ('open', 'assigned', 'in_progress');

-- A technician's load follows its tickets, whichever statement moves them.
-- Lock order: several technicians' rows are changed in ascending user_id order.
CREATE FUNCTION service_technician_load() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_tech bigint;
    new_tech bigint;
    tech bigint;
    delta integer;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status IN ('assigned', 'in_progress') THEN
        old_tech := OLD.assigned_to;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status IN ('assigned', 'in_progress') THEN
        new_tech := NEW.assigned_to;
    END IF;
    IF old_tech IS NOT DISTINCT FROM new_tech THEN
        RETURN NULL;
    END IF;
    FOR tech, delta IN
        SELECT d.user_id, d.delta FROM (VALUES (old_tech, -1), (new_tech, 1)) AS d (user_id, delta)
        WHERE d.user_id IS NOT NULL ORDER BY d.user_id
    LOOP
        UPDATE technicians SET current_load = current_load + delta WHERE user_id = tech;
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER service_tickets_load
    AFTER INSERT OR DELETE OR UPDATE OF status, assigned_to ON service_tickets
    FOR EACH ROW EXECUTE FUNCTION service_technician_load();

-- A battery that changes dealer takes its tickets along, so a dealer's scope stays exact.
CREATE FUNCTION service_tickets_follow_dealer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE service_tickets SET dealer_id = NEW.dealer_id WHERE battery_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER batteries_service_dealer
    AFTER UPDATE OF dealer_id ON batteries
    FOR EACH ROW WHEN (OLD.dealer_id IS DISTINCT FROM NEW.dealer_id)
    EXECUTE FUNCTION service_tickets_follow_dealer();

-- Every change of a ticket: who (`packfleet.actor` of the transaction, 'user:<id>' or 'system:…'),
-- when, status and technician from → to, and the other fields that changed. Written by a trigger so
-- that no code path can change a ticket without a trace.
CREATE TABLE service_ticket_history (
    id                  bigserial PRIMARY KEY,
    ticket_id           bigint NOT NULL REFERENCES service_tickets (id),
    at                  timestamptz NOT NULL DEFAULT now(),
    actor               text NOT NULL,
    action              text NOT NULL,   -- created, assigned, status_changed, updated
    from_status         text,
    to_status           text,
    from_technician_id  bigint,
    to_technician_id    bigint,
    changes             jsonb NOT NULL DEFAULT '{}',   -- {"field": {"from": …, "to": …}}
    note                text             -- `packfleet.note`: an assignment reason, a health finding
);
CREATE INDEX service_ticket_history_ticket_idx ON service_ticket_history (ticket_id, at, id);

CREATE FUNCTION service_ticket_history_record() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    actor text := coalesce(nullif(current_setting('packfleet.actor', true), ''), 'system');
    note text := nullif(current_setting('packfleet.note', true), '');
    changed jsonb;
    action text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO service_ticket_history (ticket_id, actor, action, to_status, to_technician_id, note)
        VALUES (NEW.id, actor, 'created', NEW.status, NEW.assigned_to, note);
        RETURN NULL;
    END IF;
    SELECT coalesce(jsonb_object_agg(n.key, jsonb_build_object('from', o.value, 'to', n.value)), '{}')
    INTO changed
    FROM jsonb_each(to_jsonb(NEW)) n JOIN jsonb_each(to_jsonb(OLD)) o USING (key)
    WHERE n.key IN ('description', 'location', 'latitude', 'longitude', 'priority', 'issue_category',
                    'resolution_notes', 'parts_used', 'labor_hours', 'customer_rating', 'customer_feedback')
      AND o.value IS DISTINCT FROM n.value;
    IF OLD.assigned_to IS DISTINCT FROM NEW.assigned_to AND NEW.assigned_to IS NOT NULL THEN
        action := 'assigned';
    ELSIF OLD.status IS DISTINCT FROM NEW.status THEN
        action := 'status_changed';
    ELSIF changed <> '{}' THEN
        action := 'updated';
    ELSE
        RETURN NULL;   -- nothing a person would call a change (updated_at alone)
    END IF;
    INSERT INTO service_ticket_history (ticket_id, actor, action, from_status, to_status,
                                        from_technician_id, to_technician_id, changes, note)
    VALUES (NEW.id, actor, action, OLD.status, NEW.status, OLD.assigned_to, NEW.assigned_to, changed, note);
    RETURN NULL;
END $$;

CREATE TRIGGER service_tickets_history
    AFTER INSERT OR UPDATE ON service_tickets
    FOR EACH ROW EXECUTE FUNCTION service_ticket_history_record();
