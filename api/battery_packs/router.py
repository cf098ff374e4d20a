"""Battery-pack endpoints (spec: irasus-battery-pack-api.rst), served under /api."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from api.batteries.models import ActivityEntry, activity_body
from api.batteries.service import battery_activity, require_registrar, require_writer
from api.battery_packs import bulk, service
from api.battery_packs.models import (
    SPEC_EXAMPLE,
    AllocateRequest,
    BatteryPack,
    BatteryPackCreate,
    BatteryPackDetail,
    BatteryPackUpdate,
    BulkCreateReport,
    BulkRefusal,
    BulkUpdateReport,
    DeleteRequest,
    PackDeleted,
    PackListQuery,
    PacksDeleted,
)
from api.deps import ConnDep, CurrentUser, authenticate
from api.direct_route import DirectRoute, direct_openapi, read_query
from api.errors import BadRequest, ErrorBody, error_responses, parse_json, validation_error
from api.guard import read_form, too_large
from api.openapi import schema_ref
from api.ratelimit import limit_upload
from api.shapes import Offset
from api.tags import Tag

router = APIRouter(
    prefix="/api/battery_pack", tags=[Tag.BATTERY_PACKS], responses=error_responses(401, 403, 429)
)

_CSV_UPLOAD = {
    "schema": {
        "type": "object",
        "properties": {
            "file": {
                "type": "string",
                "format": "binary",
                "description": "CSV, UTF-8, a header of the spec's field names (asset_tag required)",
            }
        },
        "required": ["file"],
        "additionalProperties": False,
    }
}


def _bulk_doc(single: bool) -> dict[str, Any]:
    """The request body of the bulk routes: JSON (one pack when `single`, or an array) or a CSV file."""
    array = {"type": "array", "items": schema_ref(BatteryPackCreate), "minItems": 1}
    json_schema = {"oneOf": [schema_ref(BatteryPackCreate), array]} if single else array
    example = SPEC_EXAMPLE if single else [SPEC_EXAMPLE]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": json_schema, "example": example},
                "multipart/form-data": _CSV_UPLOAD,
            },
        }
    }


_BULK_ERRORS = {
    status: {"model": BulkRefusal | ErrorBody, "description": description}
    for status, description in (
        (400, "A malformed body, or rows that cannot be used (all or nothing: `details` lists them)"),
        (404, "Rows naming packs that do not exist (or are not the caller's)"),
        (409, "Rows whose asset tag is taken"),
    )
}


async def _read_body(request: Request) -> tuple[str, Any]:
    """('csv', rows) for a multipart upload, ('json', value) for a JSON body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        await limit_upload(request)
        cap = request.app.state.settings.api_max_csv_bytes
        form = await read_form(
            request, cap=cap, what="CSV file", fields=("file",), max_files=1, max_fields=10
        )
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise BadRequest(
                    [{"field": "file", "message": "send the CSV as the multipart field `file`"}],
                    error="Invalid fields: file",
                )
            data = await upload.read(cap + 1)
        finally:
            await form.close()
        if len(data) > cap:
            raise too_large("CSV file", cap)
        return "csv", bulk.parse_csv(data)
    if content_type.startswith("application/json") or not content_type:
        return "json", parse_json(await request.body())
    raise BadRequest("Send JSON or a multipart CSV upload", error="Unsupported content type")


async def list_packs(request: Request) -> Response:
    """A page of battery packs; the number that match is in the X-Total-Count header."""
    principal = await authenticate(request)
    query = read_query(PackListQuery, request)
    state = request.app.state
    page, total = await service.list_packs(
        state.pool,
        state.pack_pages,
        principal=principal,
        limit=query.limit,
        offset=query.offset,
        search=query.search,
        sort=query.sort,
        order=query.order,
        filters={
            "model": query.model_name,
            "manufacturer": query.manufacturer_name,
            "owner_name": query.owner_name,
            "location": query.location,
            "status_label": query.status_label,
        },
        dealer_id=query.dealer_id,
    )
    # The page is JSON already (built by PostgreSQL): pass it on rather than parse and re-encode.
    return Response(page, media_type="application/json", headers={"X-Total-Count": str(total)})


router.add_api_route(
    "",
    list_packs,
    methods=["GET"],
    route_class_override=DirectRoute,
    response_model=list[BatteryPack],  # documentation only: the endpoint answers itself
    summary="Read the properties of a group of battery packs",
    responses={
        200: {
            "headers": {"X-Total-Count": {"description": "packs that match", "schema": {"type": "integer"}}}
        },
        **error_responses(400),
    },
    openapi_extra=direct_openapi(PackListQuery),
)


@router.post(
    "",
    status_code=201,
    response_model=BatteryPackDetail | BulkCreateReport,
    summary="Create a new battery pack (or many: a JSON array or a CSV file)",
    responses={
        200: {"model": BulkCreateReport, "description": "A dry run, or nothing created"},
        **_BULK_ERRORS,
        **error_responses(413),
    },
    openapi_extra=_bulk_doc(single=True),
)
async def create_packs(
    request: Request,
    response: Response,
    conn: ConnDep,
    principal: CurrentUser,
    dry_run: bool = False,
    all_or_nothing: bool = True,
) -> dict[str, Any]:
    """Create one pack (JSON object: 201 with the pack) or many (JSON array, or a CSV file as the
    multipart field `file`: 201 with a report; every row is checked first, and by default all or
    nothing is written). `dry_run` checks without writing (200 with the report, for one pack
    too). Admins register packs (README: "Who registers batteries")."""
    require_registrar(principal)
    kind, value = await _read_body(request)
    if kind == "json" and isinstance(value, dict):
        if not dry_run:
            return await service.create_pack(conn, principal=principal, raw=value)
        value = [value]  # a dry run of one pack: checked as a one-row bulk creation, nothing written
    if kind == "json" and not isinstance(value, list):
        raise BadRequest("Send a pack object, an array of packs, or a CSV file", error="Invalid body")
    rows = value if kind == "csv" else bulk.parse_json_rows(value)
    if not rows:
        raise BadRequest("There are no rows to apply", error="Empty upload")
    report = await bulk.bulk_create(
        conn, principal=principal, rows=rows, dry_run=dry_run, all_or_nothing=all_or_nothing, source=kind
    )
    if dry_run or report["created"] == 0:
        response.status_code = 200
    return report


@router.patch(
    "",
    response_model=BulkUpdateReport,
    summary="Update the properties of a group of battery packs (a CSV file or a JSON array)",
    responses={**_BULK_ERRORS, **error_responses(413)},
    openapi_extra=_bulk_doc(single=False),
)
async def update_packs(
    request: Request,
    conn: ConnDep,
    principal: CurrentUser,
    dry_run: bool = False,
    all_or_nothing: bool = True,
) -> dict[str, Any]:
    """Update many packs from a CSV file or a JSON array; an empty cell leaves a field as it is. A
    row names its pack by `asset_tag` (the caller's live packs only) and gives no `dealer_id`: an
    update does not move a pack to another dealer. A row that breaks this is reported by number."""
    require_writer(principal)
    kind, value = await _read_body(request)
    if kind == "json" and not isinstance(value, list):
        raise BadRequest("Send an array of packs or a CSV file", error="Invalid body")
    rows = value if kind == "csv" else bulk.parse_json_rows(value)
    if not rows:
        raise BadRequest("There are no rows to apply", error="Empty upload")
    return await bulk.bulk_update(
        conn, principal=principal, rows=rows, dry_run=dry_run, all_or_nothing=all_or_nothing, source=kind
    )


@router.delete(
    "",
    response_model=PacksDeleted,
    summary="Delete a group of battery packs",
    responses=error_responses(400, 404, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema_ref(DeleteRequest)}},
        }
    },
)
async def delete_packs(request: Request, conn: ConnDep, principal: CurrentUser) -> dict[str, Any]:
    """Soft-delete a group: body `{"asset_tags": [...]}` (or a bare array of asset tags); all of
    them, or none when any is unknown (404 naming them)."""
    require_writer(principal)
    data = await request.body()
    if not data.strip():
        raise BadRequest(
            [{"field": "asset_tags", "message": 'required: send {"asset_tags": ["...", ...]}'}],
            error="Invalid fields: asset_tags",
        )
    value = parse_json(data)
    try:
        wanted = DeleteRequest.model_validate({"asset_tags": value} if isinstance(value, list) else value)
    except ValidationError as exc:
        raise validation_error(list(exc.errors(include_url=False))) from None
    return await service.delete_packs(conn, principal=principal, tags=wanted.asset_tags)


_ONE = error_responses(400, 404)


@router.get(
    "/{i}",
    response_model=BatteryPackDetail,
    summary="Read the properties of an individual battery pack",
    responses=_ONE,
)
async def get_pack(conn: ConnDep, principal: CurrentUser, i: str) -> dict[str, Any]:
    """One pack, with its allocation history."""
    return await service.pack_detail(conn, principal=principal, tag=i)


@router.patch(
    "/{i}",
    response_model=BatteryPackDetail,
    summary="Update the properties of an individual battery pack",
    responses=error_responses(400, 404, 409, 413),  # 409: a body asset_tag not the path's
)
async def update_pack(
    conn: ConnDep, principal: CurrentUser, i: str, body: BatteryPackUpdate
) -> dict[str, Any]:
    """Change the fields given (spec shape); an explicit null clears a field."""
    return await service.update_pack(conn, principal=principal, tag=i, body=body)


@router.delete(
    "/{i}", response_model=PackDeleted, summary="Delete an individual battery pack", responses=_ONE
)
async def delete_pack(conn: ConnDep, principal: CurrentUser, i: str) -> dict[str, Any]:
    """Soft delete: the pack leaves the lists, its telemetry and history stay."""
    return await service.delete_pack(conn, principal=principal, tag=i)


@router.post(
    "/{i}/allocate",
    response_model=BatteryPackDetail,
    summary="Allocate an individual battery pack to a vehicle, user or location",
    responses=error_responses(400, 404, 413),
)
async def allocate_pack(
    conn: ConnDep, principal: CurrentUser, i: str, body: AllocateRequest
) -> dict[str, Any]:
    """Allocate to a Vehicle, User or Location; every allocation stays in the history."""
    return await service.allocate_pack(conn, principal=principal, tag=i, body=body)


@router.get(
    "/{i}/activity",
    response_model=list[ActivityEntry],
    summary="Get a battery pack's activity log",
    responses=_ONE,
)
async def pack_activity(
    conn: ConnDep,
    principal: CurrentUser,
    i: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[Offset, Query()] = 0,
) -> list[dict[str, Any]]:
    """Who changed what on the pack, newest first."""
    rows = await battery_activity(conn, principal=principal, serial=i, limit=limit, offset=offset)
    return [activity_body(r) for r in rows]
