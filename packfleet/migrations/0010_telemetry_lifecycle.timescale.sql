-- packfleet:no-transaction
-- TimescaleDB only: compress old chunks (segmented by battery), drop very old ones, and keep an
-- hourly continuous aggregate. The intervals are the defaults of PACKFLEET_TELEMETRY_COMPRESS_AFTER
-- and PACKFLEET_TELEMETRY_RETENTION; the ingest worker re-applies the configured values at start
-- (ingest/policies.py). Each statement may be re-run: a failure half-way can be retried.
ALTER TABLE telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'battery_id',
    timescaledb.compress_orderby = 'ts DESC'
);
SELECT add_compression_policy('telemetry', compress_after => INTERVAL '7 days', if_not_exists => true);
SELECT add_retention_policy('telemetry', drop_after => INTERVAL '365 days', if_not_exists => true);
-- Real-time (materialized_only = false): the newest hour is computed on the fly, so the view
-- answers like the plain-PostgreSQL view of the same name.
CREATE MATERIALIZED VIEW IF NOT EXISTS telemetry_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT battery_id,
       time_bucket(INTERVAL '1 hour', ts) AS bucket,
       count(*) AS readings,
       avg(voltage) AS voltage_avg, min(voltage) AS voltage_min, max(voltage) AS voltage_max,
       avg(current) AS current_avg, min(current) AS current_min, max(current) AS current_max,
       avg(soc) AS soc_avg, min(soc) AS soc_min, max(soc) AS soc_max,
       avg(temperature) AS temperature_avg, max(temperature) AS temperature_max
FROM telemetry
GROUP BY battery_id, bucket
WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_hourly',
    start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes',
    if_not_exists => true);
