"""Demo data for `packfleet up` and `packfleet seed-demo`: a dealer, consumers, a few dozen batteries."""

from __future__ import annotations

import logging

import psycopg

log = logging.getLogger(__name__)

ADMIN_PHONE = "+919800000001"
DEALER_PHONE = "+919800000002"
TECHNICIAN_PHONE = "+919800000003"
NBFC_PHONE = "+919800000004"
SERIAL_PREFIX = "DEMO"

_PACKS = [  # (model, chemistry, nominal voltage, capacity, cell type)
    ("Irasus 48V48", "Li-NMC", "48 V", "48 Ah", "Cylindrical"),
    ("Irasus 51V40", "LFP", "51.2 V", "40 Ah", "Prismatic"),
    ("Irasus 60V30", "Li-NMC", "60 V", "30 Ah", "Pouch"),
]
_CONSUMERS = [
    ("Ram Kumar", "+919800000101"),
    ("Priya Sharma", "+919800000102"),
    ("Arjun Reddy", "+919800000103"),
    ("Meena Iyer", "+919800000104"),
]


def demo_serials(count: int) -> list[str]:
    return [f"{SERIAL_PREFIX}{i:04d}" for i in range(1, count + 1)]


def seed_demo(conn: psycopg.Connection, *, batteries: int = 24) -> list[str]:
    """Create the demo rows unless they exist; return the demo battery serials."""
    with conn.transaction():
        dealer = conn.execute(
            "SELECT dealer_id AS id FROM users WHERE phone = %s", (DEALER_PHONE,)
        ).fetchone()
        if dealer is None:
            dealer = conn.execute(
                "INSERT INTO dealers (name, phone) VALUES ('Demo Motors', %s) RETURNING id", (DEALER_PHONE,)
            ).fetchone()
            conn.execute(
                """INSERT INTO users (phone, name, role, dealer_id) VALUES
                   (%s, 'Demo Admin', 'admin', NULL),
                   (%s, 'Demo Dealer', 'dealer', %s),
                   (%s, 'Demo Technician', 'technician', NULL),
                   (%s, 'Demo NBFC', 'nbfc', NULL)""",
                (ADMIN_PHONE, DEALER_PHONE, dealer["id"], TECHNICIAN_PHONE, NBFC_PHONE),
            )
            consumer_ids = []
            for name, phone in _CONSUMERS:
                row = conn.execute(
                    """INSERT INTO consumers (dealer_id, name, phone, kyc_status)
                       VALUES (%s, %s, %s, 'verified') RETURNING id""",
                    (dealer["id"], name, phone),
                ).fetchone()
                consumer_ids.append(row["id"])
                conn.execute(
                    "INSERT INTO users (phone, name, role, consumer_id) VALUES (%s, %s, 'consumer', %s)",
                    (phone, name, row["id"]),
                )
            # The technician's service profile, so that tickets of the demo fleet are auto-assigned.
            conn.execute(
                """INSERT INTO technicians (user_id, skills, rating, experience_years, location, latitude,
                                            longitude)
                   SELECT id, ARRAY['battery_maintenance', 'charging_systems', 'electrical', 'mechanical'],
                          4.5, 3, 'Bengaluru', 12.9716, 77.5946
                   FROM users WHERE phone = %s""",
                (TECHNICIAN_PHONE,),
            )
            log.info("demo dealer, users and consumers created", extra={"dealer_id": dealer["id"]})
        consumer_ids = [
            r["id"]
            for r in conn.execute(
                "SELECT id FROM consumers WHERE dealer_id = %s ORDER BY id", (dealer["id"],)
            )
        ]
        serials = demo_serials(batteries)
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO batteries (serial_number, dealer_id, owner_id, company, status_label, model,
                       manufacturer_name, location, warranty_months, cell_chemistry, nominal_voltage,
                       nominal_capacity, bms_type, cell_type, casing)
                   VALUES (%s, %s, %s, 'Irasus Technologies Private Limited', %s, %s,
                       'Irasus Technologies Private Limited', 'Bengaluru', 36, %s, %s, %s, 'Firmware', %s,
                       'Aluminium')
                   ON CONFLICT (serial_number) DO NOTHING""",
                [
                    (
                        serial,
                        dealer["id"],
                        consumer_ids[i % len(consumer_ids)] if consumer_ids and i % 3 else None,
                        "In Vehicle" if i % 3 else "In Warehouse",
                        *_PACKS[i % len(_PACKS)],
                    )
                    for i, serial in enumerate(serials)
                ],
            )
    return serials
