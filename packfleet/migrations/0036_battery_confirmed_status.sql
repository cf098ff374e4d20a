-- A battery's `status` is what its device has confirmed; what was asked for is `desired_status`.
--
-- Until now `status` was set when a command was issued, so a battery read `inactive` from the moment
-- a disable was queued, and stayed so after the command expired unacknowledged. From here on:
--   desired_status  set with the desired switches when a command is issued (control.commands), and
--                   put back when the command is cancelled (commands.prev_status holds the previous one)
--   status          follows the device's reported switches (acks: control; status messages: ingest),
--                   as schemas/state.py defines it: `active` while the battery can discharge,
--                   otherwise the disabled status asked for (inactive or maintenance). A battery that
--                   never reported keeps the status it was registered with.
-- Both are plain columns, written only when they change, so that the narrow updates of ingest and
-- control do not fire the list triggers below for nothing.

ALTER TABLE batteries ADD COLUMN desired_status text NOT NULL DEFAULT 'active'
    CHECK (desired_status IN ('active', 'inactive', 'maintenance'));

COMMENT ON COLUMN commands.prev_status IS 'the battery''s desired_status before this command';

-- The desired and reported pairs in the form devices report them (schemas/state.py): a switch a pair
-- does not name is in the other position. Enables of one switch were stored as (true, that switch),
-- which in that form would say the other is off: they meant everything on.
UPDATE batteries SET desired_spec = 'both' WHERE desired_enabled AND desired_spec <> 'both';
UPDATE batteries SET reported_spec = 'both' WHERE reported_enabled AND reported_spec <> 'both';

SELECT set_config('packfleet.actor', 'migration 0036', true);  -- for the status_changed activity rows
UPDATE batteries SET
    desired_status = status,
    status = CASE
        WHEN reported_enabled IS NULL THEN 'active'
        WHEN (CASE WHEN reported_spec = 'charging' THEN NOT reported_enabled ELSE reported_enabled END)
            THEN 'active'
        WHEN status IN ('inactive', 'maintenance') THEN status
        ELSE 'inactive'
    END;

-- Status changes are logged by the row trigger of 0031, one INSERT per row. Control and ingest change
-- the statuses of thousands of batteries at once (a fan-out's acks) and log them with one INSERT of
-- their own, saying so in `packfleet.status_logged` for the statement: the trigger then stays quiet.
DROP TRIGGER batteries_status_activity ON batteries;
CREATE TRIGGER batteries_status_activity
    AFTER UPDATE OF status ON batteries
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       AND current_setting('packfleet.status_logged', true) IS DISTINCT FROM 'yes')
    EXECUTE FUNCTION battery_status_activity();

-- Pack lists show desired_status from the row, beside status: a change to it changes a list (0035).
DROP TRIGGER batteries_list_fields_changed ON batteries;
CREATE TRIGGER batteries_list_fields_changed
    AFTER UPDATE OF status, desired_status, updated_at, deleted_at ON batteries
    FOR EACH STATEMENT EXECUTE FUNCTION battery_pack_lists_changed();

