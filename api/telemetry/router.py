"""Telemetry query endpoints for ops dashboards: history, latest, positions, fleet aggregates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from psycopg import AsyncConnection
from pydantic import AwareDatetime, BeforeValidator, TypeAdapter

from api.deps import ConnDep, CurrentUser, PoolDep, SettingsDep, get_conn
from api.errors import BadRequest, error_responses
from api.shapes import MAX_ID
from api.telemetry import queries, service
from api.telemetry.buckets import CURSOR_PATTERN
from api.telemetry.models import (
    FIELDS,
    Agg,
    FleetSeries,
    LatestReading,
    PositionCollection,
    TelemetrySeries,
)
from api.telemetry.queries import Storage
from schemas.device import rfc3339_text

router = APIRouter(prefix="/api/telemetry", tags=["Telemetry"])

READ_ERRORS = error_responses(400, 401, 403, 429)
_COLLECTION = TypeAdapter(dict[str, Any])
# RFC 3339 only, as the document's date-time says: pydantic alone also takes `to=0.5` as a Unix time.
Rfc3339 = Annotated[AwareDatetime, BeforeValidator(rfc3339_text)]
From = Annotated[
    Rfc3339 | None,
    Query(alias="from", description="RFC 3339 start, inclusive (default: a day before `to`)"),
]
To = Annotated[Rfc3339 | None, Query(alias="to", description="RFC 3339 end, exclusive (default: now)")]
DealerFilter = Annotated[int | None, Query(ge=1, le=MAX_ID, description="admin only: one dealer's fleet")]
IntervalText = Annotated[
    str,
    Query(
        min_length=2,
        max_length=32,
        description="bucket width: 1m, 15m, 1h, 1d, or ISO 8601 (PT1H, P1D); at most 366 days",
        examples=["1h", "PT15M"],
    ),
]
# What the parsers take, in the document: a string of these patterns is answered, any other refused.
_LON = r"-?(180(\.0+)?|(1[0-7][0-9]|[1-9]?[0-9])(\.[0-9]+)?)"
_LAT = r"-?(90(\.0+)?|[1-8]?[0-9](\.[0-9]+)?)"
BBOX_PATTERN = f"^{_LON},{_LAT},{_LON},{_LAT}$"
_FIELD = "(" + "|".join(FIELDS) + ")"
FIELDS_PATTERN = f"^{_FIELD}(,{_FIELD})*$"

# Given back when the handler returns, before the answer is sent: a CSV streams for as long as its
# client takes to read it, and must not hold the request's connection meanwhile.
HandlerConn = Annotated[AsyncConnection, Depends(get_conn, scope="function")]


async def storage_dep(request: Request, conn: HandlerConn) -> Storage:
    """Which storage path this database is on (asked once per process, on the handler's connection:
    a second one from the pool could wait on requests that wait for it)."""
    state = request.app.state
    if getattr(state, "telemetry_storage", None) is None:
        state.telemetry_storage = await queries.storage_of(conn)
    return state.telemetry_storage


StorageDep = Annotated[Storage, Depends(storage_dep)]


def _fields(text: str | None) -> list[str]:
    if text is None:
        return list(FIELDS)
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(FIELDS))
    if unknown or not chosen:
        raise BadRequest(
            f"fields are a comma-separated list of {', '.join(FIELDS)}; unknown: {', '.join(unknown) or '-'}",
            error="Invalid fields",
        )
    return list(dict.fromkeys(chosen))


@router.get("/latest", response_model=list[LatestReading], responses=READ_ERRORS, summary="Latest readings")
async def latest(
    conn: ConnDep,
    principal: CurrentUser,
    dealer_id: DealerFilter = None,
    online: Annotated[bool | None, Query(description="only batteries online (true) or offline")] = None,
    soc_below: Annotated[float | None, Query(gt=0, le=100, description="only SOC below this, %")] = None,
    stale_minutes: Annotated[
        int | None,
        Query(ge=1, le=525_600, description="only batteries with no reading for this many minutes"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Any:
    """Each battery of the caller's fleet with its newest reading (from `battery_latest`), by serial."""
    return await service.latest(
        conn,
        principal=principal,
        dealer_id=dealer_id,
        online=online,
        soc_below=soc_below,
        stale_minutes=stale_minutes,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/positions",
    response_model=PositionCollection,
    responses=READ_ERRORS,
    summary="Battery positions (GeoJSON)",
)
async def positions(
    conn: ConnDep,
    principal: CurrentUser,
    dealer_id: DealerFilter = None,
    bbox: Annotated[
        str | None,
        Query(
            max_length=100,
            pattern=BBOX_PATTERN,
            description=(
                "west,south,east,north in degrees (west > east crosses the antimeridian;"
                " south > north holds no point)"
            ),
            examples=["77.4,12.8,77.8,13.1"],
        ),
    ] = None,
) -> Any:
    """One GeoJSON Point per battery at its newest reported position, with serial, SOC, status."""
    collection = await service.positions(
        conn, principal=principal, dealer_id=dealer_id, bbox=service.parse_bbox(bbox)
    )
    # Built to PositionCollection by service.positions: for a fleet of 10,000 FastAPI's check of the
    # return value against the model took about half of the route's time (bench/telemetry_query.py).
    return Response(_COLLECTION.dump_json(collection), media_type="application/json")


@router.get("/fleet", response_model=FleetSeries, responses=READ_ERRORS, summary="Fleet aggregates")
async def fleet(
    conn: HandlerConn,
    principal: CurrentUser,
    settings: SettingsDep,
    storage: StorageDep,
    start: From = None,
    end: To = None,
    interval: IntervalText = "1h",
    dealer_id: DealerFilter = None,
) -> Any:
    """Per bucket over the caller's fleet: batteries reporting, readings stored, mean SOC and its
    spread across batteries, energy charged and discharged. Buckets of an hour or coarser are read
    from the hourly or daily rollup."""
    return await service.fleet(
        conn,
        storage,
        principal=principal,
        dealer_id=dealer_id,
        start=start,
        end=end,
        interval=interval,
        max_points=settings.telemetry_max_points,
    )


@router.get(
    "/{serial}",
    response_model=TelemetrySeries,
    response_model_exclude_unset=True,
    responses={
        **error_responses(400, 401, 403, 404, 429),
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
    },
    summary="A battery's telemetry history",
)
async def battery_telemetry(
    conn: HandlerConn,
    pool: PoolDep,
    principal: CurrentUser,
    settings: SettingsDep,
    storage: StorageDep,
    serial: str,
    start: From = None,
    end: To = None,
    interval: Annotated[
        str | None,
        Query(
            min_length=2,
            max_length=32,
            description="bucket width (1m, 15m, 1h, 1d or ISO 8601 like PT1H); raw readings when absent",
        ),
    ] = None,
    agg: Annotated[Agg, Query(description="how a bucket combines its readings")] = "avg",
    fields: Annotated[
        str | None,
        Query(
            max_length=100,
            pattern=FIELDS_PATTERN,
            description="comma-separated: voltage,current,soc,temperature (default all)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="raw readings per page")] = 1000,
    cursor: Annotated[
        str | None,
        Query(max_length=64, pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page"),
    ] = None,
    format: Annotated[Literal["json", "csv"], Query(description="csv streams the whole range")] = "json",
) -> Any:
    """Readings of one battery over [from, to): raw (a page of `limit`, oldest first, with a cursor)
    or in buckets of `interval` combined by `agg` (an hour or coarser: read from the rollups). A
    bucketed request over the points cap is refused with a 400 naming an interval that fits.
    `format=csv` streams every raw reading of the range, or the buckets."""
    csv = format == "csv"
    series = await service.battery_series(
        conn,
        storage,
        principal=principal,
        serial=serial,
        start=start,
        end=end,
        interval=interval,
        agg=agg,
        fields=_fields(fields),
        limit=1 if csv and interval is None else limit,
        cursor=None if csv else cursor,
        max_points=settings.telemetry_max_points,
    )
    if not csv:
        return series
    name = f"{series['serial_number']}-{_stamp(series['from'])}-{_stamp(series['to'])}.csv"
    return StreamingResponse(
        service.export_csv(pool, series),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _stamp(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%SZ")
