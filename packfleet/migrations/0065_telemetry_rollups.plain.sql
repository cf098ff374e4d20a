-- Plain PostgreSQL: the hourly and daily rollups of each battery are tables kept by an incremental
-- refresh on the business scheduler (api/telemetry/rollups.py), read through views named and shaped
-- like TimescaleDB's continuous aggregates (the timescale variant of this migration), real-time as
-- those are: buckets from the refresh's watermark on are computed from raw readings when read.
--
-- Which hours to refresh: every insert into telemetry logs the hours it touched, one row per hour
-- per statement (an ingest batch is one statement, so one or two rows), through a statement trigger.
-- The log has no key, so concurrent ingest workers never wait on each other for it; the refresh
-- deletes the rows it saw and re-aggregates those hours, so a late store-and-forward batch
-- re-aggregates its hour whatever its age. Hours are counted from 2000-01-03 00:00 UTC, the origin
-- of api/telemetry/buckets.py (time_bucket's default).

DROP VIEW IF EXISTS telemetry_hourly;

CREATE TABLE telemetry_hourly_store (
    battery_id            bigint NOT NULL,
    bucket                timestamptz NOT NULL,
    readings              bigint NOT NULL,
    voltage_avg float8, voltage_min real, voltage_max real, voltage_first real, voltage_last real,
    current_avg float8, current_min real, current_max real, current_first real, current_last real,
    soc_avg float8, soc_min real, soc_max real, soc_first real, soc_last real,
    temperature_avg float8, temperature_min real, temperature_max real, temperature_first real,
    temperature_last real,
    temperature_readings  bigint NOT NULL,
    energy_charged_wh     float8 NOT NULL,
    energy_discharged_wh  float8 NOT NULL,
    first_ts              timestamptz NOT NULL,
    last_ts               timestamptz NOT NULL,
    PRIMARY KEY (battery_id, bucket)
);
CREATE INDEX telemetry_hourly_store_bucket_idx ON telemetry_hourly_store (bucket);
CREATE TABLE telemetry_daily_store (LIKE telemetry_hourly_store INCLUDING ALL);

-- The watermarks: buckets before them are read from the stores, later ones computed on read.
CREATE TABLE telemetry_rollup_state (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    hourly_through  timestamptz NOT NULL,
    daily_through   timestamptz NOT NULL,
    refreshed_at    timestamptz
);
INSERT INTO telemetry_rollup_state (hourly_through, daily_through) VALUES ('-infinity', '-infinity');

CREATE TABLE telemetry_dirty_hours (
    bucket     timestamptz NOT NULL,
    marked_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION telemetry_mark_dirty_hours() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO telemetry_dirty_hours (bucket)
    SELECT DISTINCT date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') FROM new_readings;
    RETURN NULL;
END $$;

CREATE TRIGGER telemetry_rollup_dirty
    AFTER INSERT ON telemetry REFERENCING NEW TABLE AS new_readings
    FOR EACH STATEMENT EXECUTE FUNCTION telemetry_mark_dirty_hours();

-- Readings stored before this migration: their hours are refreshed by the first run.
INSERT INTO telemetry_dirty_hours (bucket)
SELECT DISTINCT date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') FROM telemetry;

CREATE VIEW telemetry_hourly AS
SELECT battery_id,
       bucket,
       readings,
       voltage_avg,
       voltage_min,
       voltage_max,
       voltage_first,
       voltage_last,
       current_avg,
       current_min,
       current_max,
       current_first,
       current_last,
       soc_avg,
       soc_min,
       soc_max,
       soc_first,
       soc_last,
       temperature_avg,
       temperature_min,
       temperature_max,
       temperature_first,
       temperature_last,
       temperature_readings,
       energy_charged_wh,
       energy_discharged_wh,
       first_ts,
       last_ts
FROM telemetry_hourly_store
WHERE bucket < (SELECT hourly_through FROM telemetry_rollup_state)
UNION ALL
SELECT battery_id,
       date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       count(*) AS readings,
       avg(voltage) AS voltage_avg,
       min(voltage) AS voltage_min,
       max(voltage) AS voltage_max,
       (array_agg(voltage ORDER BY ts))[1] AS voltage_first,
       (array_agg(voltage ORDER BY ts DESC))[1] AS voltage_last,
       avg(current) AS current_avg,
       min(current) AS current_min,
       max(current) AS current_max,
       (array_agg(current ORDER BY ts))[1] AS current_first,
       (array_agg(current ORDER BY ts DESC))[1] AS current_last,
       avg(soc) AS soc_avg,
       min(soc) AS soc_min,
       max(soc) AS soc_max,
       (array_agg(soc ORDER BY ts))[1] AS soc_first,
       (array_agg(soc ORDER BY ts DESC))[1] AS soc_last,
       avg(temperature) AS temperature_avg,
       min(temperature) AS temperature_min,
       max(temperature) AS temperature_max,
       (array_agg(temperature ORDER BY ts))[1] AS temperature_first,
       (array_agg(temperature ORDER BY ts DESC))[1] AS temperature_last,
       count(temperature) AS temperature_readings,
       coalesce(sum(voltage::float8 * greatest(-current::float8, 0)) * date_part('epoch', max(ts) - min(ts)) / nullif(count(*) - 1, 0) / 3600, 0) AS energy_charged_wh,
       coalesce(sum(voltage::float8 * greatest(current::float8, 0)) * date_part('epoch', max(ts) - min(ts)) / nullif(count(*) - 1, 0) / 3600, 0) AS energy_discharged_wh,
       min(ts) AS first_ts,
       max(ts) AS last_ts
FROM telemetry
WHERE ts >= (SELECT hourly_through FROM telemetry_rollup_state)
GROUP BY battery_id, date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00');

CREATE VIEW telemetry_daily AS
SELECT battery_id,
       bucket,
       readings,
       voltage_avg,
       voltage_min,
       voltage_max,
       voltage_first,
       voltage_last,
       current_avg,
       current_min,
       current_max,
       current_first,
       current_last,
       soc_avg,
       soc_min,
       soc_max,
       soc_first,
       soc_last,
       temperature_avg,
       temperature_min,
       temperature_max,
       temperature_first,
       temperature_last,
       temperature_readings,
       energy_charged_wh,
       energy_discharged_wh,
       first_ts,
       last_ts
FROM telemetry_daily_store
WHERE bucket < (SELECT daily_through FROM telemetry_rollup_state)
UNION ALL
SELECT battery_id,
       date_bin(INTERVAL '1 day', bucket, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       sum(readings)::bigint AS readings,
       sum(voltage_avg * readings) / nullif(sum(readings), 0) AS voltage_avg,
       min(voltage_min) AS voltage_min,
       max(voltage_max) AS voltage_max,
       (array_agg(voltage_first ORDER BY bucket))[1] AS voltage_first,
       (array_agg(voltage_last ORDER BY bucket DESC))[1] AS voltage_last,
       sum(current_avg * readings) / nullif(sum(readings), 0) AS current_avg,
       min(current_min) AS current_min,
       max(current_max) AS current_max,
       (array_agg(current_first ORDER BY bucket))[1] AS current_first,
       (array_agg(current_last ORDER BY bucket DESC))[1] AS current_last,
       sum(soc_avg * readings) / nullif(sum(readings), 0) AS soc_avg,
       min(soc_min) AS soc_min,
       max(soc_max) AS soc_max,
       (array_agg(soc_first ORDER BY bucket))[1] AS soc_first,
       (array_agg(soc_last ORDER BY bucket DESC))[1] AS soc_last,
       sum(temperature_avg * temperature_readings) / nullif(sum(temperature_readings), 0) AS temperature_avg,
       min(temperature_min) AS temperature_min,
       max(temperature_max) AS temperature_max,
       (array_agg(temperature_first ORDER BY bucket))[1] AS temperature_first,
       (array_agg(temperature_last ORDER BY bucket DESC))[1] AS temperature_last,
       sum(temperature_readings)::bigint AS temperature_readings,
       sum(energy_charged_wh) AS energy_charged_wh,
       sum(energy_discharged_wh) AS energy_discharged_wh,
       min(first_ts) AS first_ts,
       max(last_ts) AS last_ts
FROM telemetry_hourly
WHERE bucket >= (SELECT daily_through FROM telemetry_rollup_state)
GROUP BY battery_id, date_bin(INTERVAL '1 day', bucket, TIMESTAMPTZ '2000-01-03 00:00:00+00');
