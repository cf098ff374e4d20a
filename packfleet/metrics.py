"""Prometheus exporter for the worker processes (the API serves /metrics only to PACKFLEET_METRICS_TOKEN)."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

log = logging.getLogger(__name__)


def serve_metrics(port: int | None) -> None:
    """Expose the default registry on `port` (0 picks a free one); do nothing when None."""
    if port is None:
        return
    server, _thread = start_http_server(port, addr="127.0.0.1")
    log.info("metrics on http://127.0.0.1:%d/metrics", server.server_port)
