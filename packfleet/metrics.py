"""Prometheus exporter for the worker processes (the API serves /metrics only to PACKFLEET_METRICS_TOKEN)."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

log = logging.getLogger(__name__)


def serve_metrics(port: int | None, host: str = "127.0.0.1") -> None:
    """Expose the default registry on `host`:`port` (0 picks a free port); do nothing when None."""
    if port is None:
        return
    server, _thread = start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
