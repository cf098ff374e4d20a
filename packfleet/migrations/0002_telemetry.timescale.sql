SELECT create_hypertable('telemetry', by_range('ts', INTERVAL '1 day'));
