"""The FastAPI application: routers, error handlers, the pool opened in the lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api.analytics.router import router as analytics_router
from api.auth.router import router as auth_router
from api.batteries.details import BatteryDetails
from api.batteries.router import router as batteries_router
from api.battery_packs.page_cache import PackPageCache
from api.battery_packs.router import router as battery_packs_router
from api.commands.router import router as commands_router
from api.consumers.router import router as consumers_router
from api.dashboard import dashboard_files
from api.errors import install_error_handlers
from api.finance.router import router as finance_router
from api.guard import RequestGuard, guarded_metrics
from api.messaging.router import router as messaging_router
from api.nbfc.router import router as nbfc_router
from api.openapi import OPENAPI_PATH, contract_openapi, install_docs, operation_id
from api.query import documented_query, refuse_unknown_query
from api.ratelimit import build_rate_limits
from api.service.router import router as service_router
from api.tags import OPENAPI_TAGS
from api.telemetry.router import router as telemetry_router
from packfleet.db import open_pool
from packfleet.logs import setup_logging
from packfleet.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_pool(
            settings.require_database_url(), name="api", max_size=settings.db_pool_max, autocommit=True
        ) as pool:
            app.state.pool = pool
            app.state.battery_details = BatteryDetails(pool)
            app.state.pack_pages = None
            if settings.api_page_cache_mb:
                app.state.pack_pages = PackPageCache(
                    settings.require_database_url(), max_bytes=settings.api_page_cache_mb * 2**20
                )
                await app.state.pack_pages.start()
            # Built here, not on the first request with a query (which waited ~0.7 s for it).
            documented_query(app)
            # What start-up created lives as long as the process: keep it out of the collector's
            # full passes (they paused every request for ~90 ms, now ~6 ms; bench/api.py). Requests'
            # objects are freed by reference counting; with Python's default threshold (700) the
            # collector still ran ~150 times a second under load (7 % of the CPU), promoting the
            # objects of requests in flight. 10,000: ~1.5 times a second, 1.3 % (bench/api.py).
            gc.freeze()
            gc.set_threshold(10_000, 10, 10)
            try:
                yield
            finally:
                if app.state.pack_pages is not None:
                    await app.state.pack_pages.stop()
                standing = getattr(app.state, "account_standing", None)
                if standing is not None:  # its own connection (api/auth/standing.py)
                    await standing.close()

    app = FastAPI(
        title="packfleet API",
        version="1.0",
        description=(
            "Battery-as-a-service backend: batteries, battery packs, consumers, commands. "
            "Sign in with `POST /api/auth/login` and `POST /api/auth/verify-otp`, then send the token "
            "as `Authorization: Bearer <token>`. Every error answers `{error, details, code}`."
        ),
        openapi_tags=OPENAPI_TAGS,
        docs_url=None,  # install_docs serves Swagger UI from the package, not a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url=OPENAPI_PATH,
        generate_unique_id_function=operation_id,
        lifespan=lifespan,
        dependencies=[Depends(refuse_unknown_query)],
        # Metrics are Prometheus' (/metrics); FastAPI's OpenTelemetry bridge, checked per request, is off.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.rate_limits = build_rate_limits(settings)  # fails at start-up if Redis support is missing
    app.openapi = contract_openapi(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    install_docs(app)
    # Routes are matched in order: the busiest reads first (batteries, packs).
    app.include_router(batteries_router)
    app.include_router(battery_packs_router)
    app.include_router(auth_router)
    app.include_router(consumers_router)
    app.include_router(commands_router)
    app.include_router(service_router)
    app.include_router(analytics_router)
    app.include_router(messaging_router)
    app.include_router(telemetry_router)
    app.include_router(finance_router)
    app.include_router(nbfc_router)
    if settings.metrics_token is not None:  # otherwise /metrics is not on the API's port (README)
        app.mount("/metrics", guarded_metrics(settings.metrics_token.get_secret_value()))
    app.mount("/dashboard", dashboard_files(), name="dashboard")
    # The token before the body, and every body capped (api/guard.py).
    app.add_middleware(
        RequestGuard,
        json_cap=settings.api_max_json_bytes,
        upload_cap=max(settings.api_max_csv_bytes, settings.api_max_document_bytes),
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        async with app.state.pool.connection() as conn:
            await conn.execute("SELECT 1")
        return {"status": "ok"}

    return app


def app_from_environment() -> FastAPI:
    """The app configured from PACKFLEET_* variables (uvicorn's factory for several workers)."""
    settings = Settings()
    setup_logging(settings.log_level, json_lines=settings.log_json)
    return create_app(settings)
