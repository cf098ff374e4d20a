-- Plain PostgreSQL: no compression or retention jobs, and the hourly rollup is an ordinary view
-- computed on read, with the columns of TimescaleDB's continuous aggregate of the same name.
CREATE VIEW telemetry_hourly AS
SELECT battery_id,
       date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       count(*) AS readings,
       avg(voltage) AS voltage_avg, min(voltage) AS voltage_min, max(voltage) AS voltage_max,
       avg(current) AS current_avg, min(current) AS current_min, max(current) AS current_max,
       avg(soc) AS soc_avg, min(soc) AS soc_min, max(soc) AS soc_max,
       avg(temperature) AS temperature_avg, max(temperature) AS temperature_max
FROM telemetry
GROUP BY 1, 2;
