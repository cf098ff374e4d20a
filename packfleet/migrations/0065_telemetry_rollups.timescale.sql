-- packfleet:no-transaction
-- TimescaleDB: the hourly and daily rollups of each battery as continuous aggregates (the daily one
-- built on the hourly one), real-time like 0010's, replacing 0010's hourly aggregate with the same
-- name and a superset of its columns. The columns and expressions are those of the plain variant and
-- of api/telemetry/queries.py (first/last are TimescaleDB's aggregates here). Late readings (a
-- device's store-and-forward batch) invalidate their buckets and are re-aggregated by the refresh
-- policies within 30 days; compression and retention of telemetry stay as 0010 set them.
DROP MATERIALIZED VIEW IF EXISTS telemetry_hourly CASCADE;
CREATE MATERIALIZED VIEW telemetry_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT battery_id,
       time_bucket(INTERVAL '1 hour', ts) AS bucket,
       count(*) AS readings,
       avg(voltage) AS voltage_avg,
       min(voltage) AS voltage_min,
       max(voltage) AS voltage_max,
       first(voltage, ts) AS voltage_first,
       last(voltage, ts) AS voltage_last,
       avg(current) AS current_avg,
       min(current) AS current_min,
       max(current) AS current_max,
       first(current, ts) AS current_first,
       last(current, ts) AS current_last,
       avg(soc) AS soc_avg,
       min(soc) AS soc_min,
       max(soc) AS soc_max,
       first(soc, ts) AS soc_first,
       last(soc, ts) AS soc_last,
       avg(temperature) AS temperature_avg,
       min(temperature) AS temperature_min,
       max(temperature) AS temperature_max,
       first(temperature, ts) AS temperature_first,
       last(temperature, ts) AS temperature_last,
       count(temperature) AS temperature_readings,
       coalesce(sum(voltage::float8 * greatest(-current::float8, 0)) * date_part('epoch', max(ts) - min(ts)) / nullif(count(*) - 1, 0) / 3600, 0) AS energy_charged_wh,
       coalesce(sum(voltage::float8 * greatest(current::float8, 0)) * date_part('epoch', max(ts) - min(ts)) / nullif(count(*) - 1, 0) / 3600, 0) AS energy_discharged_wh,
       min(ts) AS first_ts,
       max(ts) AS last_ts
FROM telemetry
GROUP BY battery_id, time_bucket(INTERVAL '1 hour', ts)
WITH NO DATA;
CREATE MATERIALIZED VIEW IF NOT EXISTS telemetry_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT battery_id,
       time_bucket(INTERVAL '1 day', bucket) AS bucket,
       sum(readings)::bigint AS readings,
       sum(voltage_avg * readings) / nullif(sum(readings), 0) AS voltage_avg,
       min(voltage_min) AS voltage_min,
       max(voltage_max) AS voltage_max,
       first(voltage_first, bucket) AS voltage_first,
       last(voltage_last, bucket) AS voltage_last,
       sum(current_avg * readings) / nullif(sum(readings), 0) AS current_avg,
       min(current_min) AS current_min,
       max(current_max) AS current_max,
       first(current_first, bucket) AS current_first,
       last(current_last, bucket) AS current_last,
       sum(soc_avg * readings) / nullif(sum(readings), 0) AS soc_avg,
       min(soc_min) AS soc_min,
       max(soc_max) AS soc_max,
       first(soc_first, bucket) AS soc_first,
       last(soc_last, bucket) AS soc_last,
       sum(temperature_avg * temperature_readings) / nullif(sum(temperature_readings), 0) AS temperature_avg,
       min(temperature_min) AS temperature_min,
       max(temperature_max) AS temperature_max,
       first(temperature_first, bucket) AS temperature_first,
       last(temperature_last, bucket) AS temperature_last,
       sum(temperature_readings)::bigint AS temperature_readings,
       sum(energy_charged_wh) AS energy_charged_wh,
       sum(energy_discharged_wh) AS energy_discharged_wh,
       min(first_ts) AS first_ts,
       max(last_ts) AS last_ts
FROM telemetry_hourly
GROUP BY battery_id, time_bucket(INTERVAL '1 day', bucket)
WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_hourly',
    start_offset => INTERVAL '30 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '5 minutes',
    if_not_exists => true);
SELECT add_continuous_aggregate_policy('telemetry_daily',
    start_offset => INTERVAL '30 days',
    end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour',
    if_not_exists => true);
