-- A read-only role for dashboards (Grafana's data source, docker-compose.yml): it may read the
-- fleet's tables and rollups, never users, consumers, login codes or messages. It can log in once an
-- operator gives it a password (`ALTER ROLE packfleet_grafana PASSWORD ...`; docker-compose's
-- grafana-db-user does). Roles belong to the server, not the database: creating it is idempotent and
-- safe when many databases of one server migrate at once.
DO $$
BEGIN
    CREATE ROLE packfleet_grafana LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- already there (or created by a concurrent migration of another database)
END $$;

ALTER ROLE packfleet_grafana SET default_transaction_read_only = on;
ALTER ROLE packfleet_grafana SET statement_timeout = '30s';

DO $$
DECLARE
    name text;
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO packfleet_grafana', current_database());
    GRANT USAGE ON SCHEMA public TO packfleet_grafana;
    -- The rollups are views on both storage paths: their owner's rights read what lies beneath.
    FOREACH name IN ARRAY ARRAY['batteries', 'battery_latest', 'telemetry', 'telemetry_hourly',
                                'telemetry_daily', 'commands', 'dead_letters',
                                'loans', 'loan_instalments', 'overdue_disables']  -- finance's, once there
    LOOP
        IF to_regclass(name) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON %I TO packfleet_grafana', name);
        END IF;
    END LOOP;
END $$;
