-- Battery health estimated from telemetry by the health job (api/analytics/health.py).

-- Where the job stands for each battery, and what it last found.
CREATE TABLE battery_health_state (
    battery_id         bigint PRIMARY KEY REFERENCES batteries (id),
    processed_until    timestamptz NOT NULL,     -- the newest reading taken into account
    resume_from        timestamptz,              -- the last SOC-swing point: the next run reads from here
    charge_ah          double precision NOT NULL DEFAULT 0,   -- fading sums of the coulomb count
    swing_pct          double precision NOT NULL DEFAULT 0,
    parked_lost_pct    double precision NOT NULL DEFAULT 0,   -- and of SOC lost while parked
    parked_s           double precision NOT NULL DEFAULT 0,
    health             numeric(5, 2),            -- the estimate (NULL until the swings suffice)
    resistance_mohm    double precision,
    trend_per_day      double precision,         -- health points per day, from the history
    days_to_service    double precision,         -- at that trend, until the service threshold
    below_threshold    boolean NOT NULL DEFAULT false,
    anomalies          text[] NOT NULL DEFAULT '{}',   -- found in the last run's readings
    anomaly_details    text[] NOT NULL DEFAULT '{}',
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- One row per battery and day: the day's last estimate and every anomaly seen that day.
CREATE TABLE battery_health_history (
    battery_id       bigint NOT NULL REFERENCES batteries (id),
    day              date NOT NULL,
    dealer_key       bigint NOT NULL,            -- the battery's dealer that day (0: none)
    health           numeric(5, 2) NOT NULL,
    capacity_ah      double precision,
    resistance_mohm  double precision,
    anomalies        text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (battery_id, day)
);

-- Monthly health per dealer (sum and count of the daily rows), kept exact by the trigger below in
-- the job's transaction, so a year of trends is a dozen rows however large the fleet.
CREATE TABLE battery_health_monthly (
    dealer_key   bigint NOT NULL,
    month        date NOT NULL,
    health_sum   numeric NOT NULL,
    days         bigint NOT NULL,
    PRIMARY KEY (dealer_key, month)
);

CREATE FUNCTION battery_health_monthly_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE battery_health_monthly SET health_sum = health_sum - OLD.health, days = days - 1
        WHERE dealer_key = OLD.dealer_key AND month = date_trunc('month', OLD.day)::date;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO battery_health_monthly AS m (dealer_key, month, health_sum, days)
        VALUES (NEW.dealer_key, date_trunc('month', NEW.day)::date, NEW.health, 1)
        ON CONFLICT (dealer_key, month)
        DO UPDATE SET health_sum = m.health_sum + EXCLUDED.health_sum, days = m.days + 1;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER battery_health_history_monthly
    AFTER INSERT OR DELETE OR UPDATE OF health, dealer_key, day ON battery_health_history
    FOR EACH ROW EXECUTE FUNCTION battery_health_monthly_add();
