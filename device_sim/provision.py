"""Simulated batteries in the database: created so ingest accepts them, or their pack specs read back."""

from __future__ import annotations

import logging

from device_sim.model import PackSpec, parse_spec
from packfleet.db import connect

log = logging.getLogger(__name__)

_INSERT = """
    INSERT INTO batteries (serial_number, dealer_id, company, status_label, model, manufacturer_name,
                           location, warranty_months, cell_chemistry, nominal_voltage, nominal_capacity,
                           bms_type, cell_type, casing)
    VALUES (%s, %s, 'packfleet simulator', 'Simulated', %s, 'Irasus Technologies Private Limited',
            %s, 36, %s, %s, %s, 'Firmware', %s, 'Aluminium')
    ON CONFLICT (serial_number) DO NOTHING
"""

_SPECS = """
    SELECT serial_number, model, cell_chemistry, nominal_voltage, nominal_capacity
    FROM batteries WHERE serial_number = ANY(%s)
"""


def _number(value: float) -> str:
    return f"{value:g}"


def provision(
    database_url: str, specs: dict[str, PackSpec], *, location: str, dealer_id: int | None = None
) -> int:
    """Create the batteries that do not exist yet; return how many were created."""
    rows = [
        (
            serial,
            dealer_id,
            spec.model,
            location,
            spec.chemistry,
            f"{_number(spec.nominal_voltage)} V",
            f"{_number(spec.capacity_ah)} Ah",
            spec.cell_type,
        )
        for serial, spec in specs.items()
    ]
    with connect(database_url) as conn, conn.transaction():
        before = conn.execute("SELECT count(*) AS n FROM batteries").fetchone()
        with conn.cursor() as cur:
            cur.executemany(_INSERT, rows)
        after = conn.execute("SELECT count(*) AS n FROM batteries").fetchone()
    created = int(after["n"]) - int(before["n"]) if before and after else 0
    log.info("batteries provisioned", extra={"batteries_created": created, "requested": len(rows)})
    return created


def stored_specs(database_url: str, serials: list[str]) -> dict[str, PackSpec]:
    """The pack specs the database holds for these serials (those it can make sense of)."""
    found: dict[str, PackSpec] = {}
    with connect(database_url) as conn:
        for row in conn.execute(_SPECS, (serials,)):
            spec = parse_spec(
                model=row["model"],
                chemistry=row["cell_chemistry"],
                nominal_voltage=row["nominal_voltage"],
                capacity=row["nominal_capacity"],
            )
            if spec is not None:
                found[row["serial_number"]] = spec
    return found
