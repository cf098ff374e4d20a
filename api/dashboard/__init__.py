"""The fleet page at /dashboard: static HTML, CSS and JavaScript over the REST API (no build step,
nothing fetched from the internet), so any API process serves it."""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


def dashboard_files() -> StaticFiles:
    return StaticFiles(directory=STATIC, html=True)
