"""Shared plumbing of packfleet: settings, database pool, migrations, MQTT, logging, metrics, CLI."""
