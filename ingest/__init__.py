"""The ingest worker: MQTT telemetry and status into PostgreSQL, acknowledged only after commit.

A pipeline of small modules: receive (paho, manual ack) → parse (pure, the contract's models) →
batch (bounded buffer, flush by rows or age) → write (COPY, one transaction); main wires them.
"""
