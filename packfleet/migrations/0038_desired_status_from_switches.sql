-- desired_status from the desired switches, as control.commands sets it (schemas/state.py status_of).
--
-- 0036 copied the old `status` into desired_status. The old code set `status` to inactive for every
-- disable, a charging-only one too, whose desired switches keep discharging on: such a battery read
-- desired_status inactive while its device rightly confirmed active, and stayed awaiting_confirmation
-- for good. A battery whose desired discharging is on is `active`; otherwise the disabled status it
-- was asked for (inactive or maintenance). Running it again changes nothing.
UPDATE batteries SET desired_status = CASE
        WHEN desired_discharging THEN 'active'
        WHEN desired_status IN ('inactive', 'maintenance') THEN desired_status
        ELSE 'inactive'
    END
WHERE desired_status <> CASE
        WHEN desired_discharging THEN 'active'
        WHEN desired_status IN ('inactive', 'maintenance') THEN desired_status
        ELSE 'inactive'
    END;
