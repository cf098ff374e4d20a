-- Readings from the devices. A reading is identified by (battery_id, ts): delivered twice, stored once.
CREATE TABLE telemetry (
    battery_id   bigint NOT NULL,
    ts           timestamptz NOT NULL,
    voltage      real NOT NULL,
    current      real NOT NULL,
    soc          real NOT NULL,
    temperature  real,
    lat          double precision,
    lon          double precision,
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (battery_id, ts)
);
