"""Battery-pack endpoints (spec: irasus-battery-pack-api.rst), served under /api."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from starlette.datastructures import UploadFile

from api.batteries.models import activity_body
from api.batteries.service import battery_activity, require_writer
from api.battery_packs import bulk, service
from api.battery_packs.models import AllocateRequest, PackListQuery
from api.deps import ConnDep, CurrentUser, authenticate
from api.direct_route import DirectRoute, direct_openapi, read_query
from api.errors import BadRequest
from api.ratelimit import limit_upload

router = APIRouter(prefix="/api/battery_pack", tags=["battery packs"])

MAX_CSV_BYTES = 32 * 1024 * 1024
_EXAMPLE = {
    "asset_tag": "IRASUS01",
    "company": "Irasus Technologies Private Limited",
    "status_label": "In Warehouse",
    "model": "Model X",
    "manufacturer_name": "Irasus Technologies Private Limited",
    "location": "Delhi",
    "warranty_months": "3",
    "battery_pack": {
        "battery_cell_chemistry": "Li-NMC",
        "battery_pack_nominal_voltage": "48 V",
        "battery_pack_nominal_charge_capacity": "48 Ah",
        "bms_type": "Firmware",
        "battery_cell_type": "Cylindrical",
        "battery_pack_casing": "Plastic",
    },
}
_BULK_DOC = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
                "example": _EXAMPLE,
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        }
    }
}


async def _read_body(request: Request) -> tuple[str, Any]:
    """('csv', rows) for a multipart upload, ('json', value) for a JSON body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        await limit_upload(request)
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("Send the CSV as the multipart field `file`", error="Invalid fields: file")
        data = await upload.read(MAX_CSV_BYTES + 1)
        if len(data) > MAX_CSV_BYTES:
            raise BadRequest(
                f"The CSV file is larger than {MAX_CSV_BYTES // 2**20} MiB", error="File too large"
            )
        return "csv", bulk.parse_csv(data)
    if content_type.startswith("application/json") or not content_type:
        try:
            return "json", json.loads(await request.body())
        except ValueError:
            raise BadRequest("The body is not valid JSON", error="Invalid JSON") from None
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
    openapi_extra=direct_openapi(PackListQuery),
)


@router.post("", status_code=201, openapi_extra=_BULK_DOC)
async def create_packs(
    request: Request,
    response: Response,
    conn: ConnDep,
    principal: CurrentUser,
    dry_run: bool = False,
    all_or_nothing: bool = True,
) -> dict[str, Any]:
    """Create one pack (JSON object) or many (JSON array, or a CSV file as multipart `file`)."""
    kind, value = await _read_body(request)
    if kind == "json" and isinstance(value, dict):
        if dry_run:
            raise BadRequest("dry_run applies to bulk creation (a JSON array or a CSV file)")
        return await service.create_pack(conn, principal=principal, raw=value)
    require_writer(principal)
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


@router.patch("", openapi_extra=_BULK_DOC)
async def update_packs(
    request: Request,
    conn: ConnDep,
    principal: CurrentUser,
    dry_run: bool = False,
    all_or_nothing: bool = True,
) -> dict[str, Any]:
    """Update many packs from a CSV file or a JSON array; an empty cell leaves a field as it is."""
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


@router.delete("")
async def delete_packs(request: Request, conn: ConnDep, principal: CurrentUser) -> dict[str, Any]:
    """Soft-delete a group: body `{"asset_tags": [...]}` or a bare array of asset tags."""
    require_writer(principal)
    _, value = await _read_body(request)
    tags = value.get("asset_tags") if isinstance(value, dict) else value
    if (
        not isinstance(tags, list)
        or not tags
        or not all(isinstance(t, str) for t in tags)
        or len(tags) > 10_000
    ):
        raise BadRequest(
            'Send {"asset_tags": [...]} with 1 to 10000 asset tags', error="Invalid fields: asset_tags"
        )
    return await service.delete_packs(conn, principal=principal, tags=tags)


@router.get("/{i}")
async def get_pack(conn: ConnDep, principal: CurrentUser, i: str) -> dict[str, Any]:
    """One pack, with its allocation history."""
    return await service.pack_detail(conn, principal=principal, tag=i)


@router.patch("/{i}")
async def update_pack(conn: ConnDep, principal: CurrentUser, i: str, body: dict[str, Any]) -> dict[str, Any]:
    """Change the fields given (spec shape); an explicit null clears a field."""
    return await service.update_pack(conn, principal=principal, tag=i, raw=body)


@router.delete("/{i}")
async def delete_pack(conn: ConnDep, principal: CurrentUser, i: str) -> dict[str, Any]:
    """Soft delete: the pack leaves the lists, its telemetry and history stay."""
    return await service.delete_pack(conn, principal=principal, tag=i)


@router.post("/{i}/allocate")
async def allocate_pack(
    conn: ConnDep, principal: CurrentUser, i: str, body: AllocateRequest
) -> dict[str, Any]:
    """Allocate to a Vehicle, User or Location; every allocation stays in the history."""
    return await service.allocate_pack(conn, principal=principal, tag=i, body=body)


@router.get("/{i}/activity")
async def pack_activity(
    conn: ConnDep,
    principal: CurrentUser,
    i: str,
    limit: int = Query(default=100, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    """Who changed what on the pack, newest first."""
    rows = await battery_activity(conn, principal=principal, serial=i, limit=limit, offset=offset)
    return [activity_body(r) for r in rows]
