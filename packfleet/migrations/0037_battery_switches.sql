-- Each switch of a battery's desired and reported (enabled, spec) pairs, and whether the device
-- reports the desired switches, kept on the row for whatever reads them in SQL (the telemetry API,
-- the dashboard through it, Grafana): compared switch by switch, never by `enabled` alone, where
-- (false, charging) still discharges. This is the rule of schemas/state.py (switches, in_sync) for
-- SQL; tests/test_state.py checks the two agree on every pair.
CREATE FUNCTION battery_switch(enabled boolean, spec text, switch text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN spec IS NULL OR spec IN ('both', switch) THEN enabled ELSE NOT enabled END;

COMMENT ON FUNCTION battery_switch(boolean, text, text) IS
    'whether the switch (charging or discharging) is on in this (enabled, spec) pair; no spec means both';

ALTER TABLE batteries
    ADD COLUMN desired_charging boolean NOT NULL
        GENERATED ALWAYS AS (battery_switch(desired_enabled, desired_spec, 'charging')) STORED,
    ADD COLUMN desired_discharging boolean NOT NULL
        GENERATED ALWAYS AS (battery_switch(desired_enabled, desired_spec, 'discharging')) STORED,
    -- null until the device has reported
    ADD COLUMN reported_charging boolean
        GENERATED ALWAYS AS (battery_switch(reported_enabled, reported_spec, 'charging')) STORED,
    ADD COLUMN reported_discharging boolean
        GENERATED ALWAYS AS (battery_switch(reported_enabled, reported_spec, 'discharging')) STORED,
    -- false until the device has reported
    ADD COLUMN in_sync boolean NOT NULL GENERATED ALWAYS AS (coalesce(
        battery_switch(desired_enabled, desired_spec, 'charging')
            = battery_switch(reported_enabled, reported_spec, 'charging')
        AND battery_switch(desired_enabled, desired_spec, 'discharging')
            = battery_switch(reported_enabled, reported_spec, 'discharging'), false)) STORED;
