-- Where a battery pack has been allocated (vehicle, user, location): the whole history is kept,
-- the open row (released_at IS NULL) is the current allocation.
CREATE TABLE battery_allocations (
    id                 bigserial PRIMARY KEY,
    battery_id         bigint NOT NULL REFERENCES batteries (id),
    target_category    text NOT NULL CHECK (target_category IN ('Vehicle', 'User', 'Location')),
    target_individual  text NOT NULL,
    status_label       text,
    allocated_by       text NOT NULL,
    allocated_at       timestamptz NOT NULL DEFAULT now(),
    released_at        timestamptz
);
CREATE INDEX battery_allocations_battery_idx ON battery_allocations (battery_id, allocated_at DESC);
CREATE UNIQUE INDEX battery_allocations_open_idx ON battery_allocations (battery_id)
    WHERE released_at IS NULL;

-- Who changed what on a battery. The API writes its own changes; the trigger below also catches
-- status changes made elsewhere (control, finance), reading the actor from `packfleet.actor`.
CREATE TABLE battery_activity (
    id          bigserial PRIMARY KEY,
    battery_id  bigint NOT NULL REFERENCES batteries (id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,   -- created, updated, allocated, assigned, status_changed, deleted
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX battery_activity_battery_idx ON battery_activity (battery_id, at DESC, id DESC);

CREATE FUNCTION battery_status_activity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO battery_activity (battery_id, actor, action, detail)
    VALUES (NEW.id, coalesce(nullif(current_setting('packfleet.actor', true), ''), 'system'),
            'status_changed', jsonb_build_object('from', OLD.status, 'to', NEW.status));
    RETURN NEW;
END $$;

CREATE TRIGGER batteries_status_activity
    AFTER UPDATE OF status ON batteries
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION battery_status_activity();

-- Listing battery packs sorts by these; the list is always scoped to live rows.
CREATE INDEX batteries_live_created_idx ON batteries (created_at, id) WHERE deleted_at IS NULL;
