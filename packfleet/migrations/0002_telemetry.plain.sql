-- Plain PostgreSQL: the primary key's b-tree serves (battery_id, ts DESC) scans; BRIN for time ranges.
CREATE INDEX telemetry_ts_brin ON telemetry USING brin (ts) WITH (pages_per_range = 32);
