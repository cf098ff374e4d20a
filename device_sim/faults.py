"""Faults real BMS devices have, each a flag with a rate: `--faults drop_ack=0.1,delay_ack=0.2:8,...`.

| name        | rate is the probability...                       | optional `:param`                |
|-------------|--------------------------------------------------|----------------------------------|
| drop_ack    | that an ack message is never sent                |                                  |
| delay_ack   | that a command's acks are delayed                | longest delay, seconds (10)      |
| reject      | that a valid command is rejected                 |                                  |
| flap        | per reading, that the link drops abruptly        | longest time offline, s (60)     |
| malformed   | per reading, of also sending a broken payload    |                                  |
| duplicate   | per reading, that it is published twice          |                                  |
| skew        | per battery, that its clock is off               | largest offset, seconds (600)    |
| backlog     | per reading, of a silent spell then a burst      | readings held back (120)         |

A flap drops the TCP connection without DISCONNECT, so the broker publishes the will; readings
meanwhile go to the store-and-forward buffer. A skewed clock may run more than 5 minutes ahead:
ingest is meant to refuse those readings.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

_ALIASES = {
    "drop_acks": "drop_ack",
    "delay_acks": "delay_ack",
    "reject_commands": "reject",
    "rejects": "reject",
    "flaps": "flap",
    "offline": "flap",
    "malformed_payloads": "malformed",
    "duplicates": "duplicate",
    "skewed_clocks": "skew",
    "clock_skew": "skew",
    "burst": "backlog",
    "backlog_burst": "backlog",
}


class FaultSpecError(ValueError):
    """A --faults string that does not parse."""


@dataclass(frozen=True)
class Faults:
    """Fault rates (0..1) and their parameters; all zero means a well-behaved fleet."""

    drop_ack: float = 0.0
    delay_ack: float = 0.0
    delay_ack_max_s: float = 10.0
    reject: float = 0.0
    flap: float = 0.0
    flap_offline_max_s: float = 60.0
    malformed: float = 0.0
    duplicate: float = 0.0
    skew: float = 0.0
    skew_max_s: float = 600.0
    backlog: float = 0.0
    backlog_readings: int = 120

    @classmethod
    def parse(cls, spec: str | None) -> Faults:
        """Parse `name=rate[:param],...`; an empty spec means no faults."""
        if not spec or not spec.strip():
            return cls()
        params = {"delay_ack": "delay_ack_max_s", "flap": "flap_offline_max_s", "skew": "skew_max_s"}
        params["backlog"] = "backlog_readings"
        rates = {f.name for f in fields(cls)} - set(params.values())
        values: dict[str, float | int] = {}
        for item in spec.split(","):
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            name = name.strip().lower().replace("-", "_")
            name = _ALIASES.get(name, name)
            if not sep or name not in rates:
                raise FaultSpecError(f"unknown fault {name!r}: expected one of {', '.join(sorted(rates))}")
            rate_text, _, param_text = value.partition(":")
            try:
                rate = float(rate_text)
                param = float(param_text) if param_text else None
            except ValueError:
                raise FaultSpecError(f"fault {name}: {value!r} is not rate[:param]") from None
            if not 0.0 <= rate <= 1.0:
                raise FaultSpecError(f"fault {name}: rate {rate} is not between 0 and 1")
            values[name] = rate
            if param is not None:
                if name not in params or param <= 0:
                    raise FaultSpecError(f"fault {name}: parameter {param_text!r} is not allowed")
                values[params[name]] = int(param) if name == "backlog" else param
        return cls(**values)  # type: ignore[arg-type]

    def describe(self) -> str:
        active = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if _is_rate(f.name) and getattr(self, f.name)
        ]
        return ",".join(active) or "none"


def _is_rate(name: str) -> bool:
    return not name.endswith(("_s", "_readings"))


class Dice:
    """The fault decisions of one battery, from its own seeded generator."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self.rng = random.Random(seed)

    def roll(self, rate: float) -> bool:
        return rate > 0.0 and self.rng.random() < rate

    def ack_delay(self) -> float:
        if self.roll(self.faults.delay_ack):
            return self.rng.uniform(0.5, self.faults.delay_ack_max_s)
        return 0.0

    def clock_skew(self) -> float:
        if self.roll(self.faults.skew):
            return self.rng.uniform(-self.faults.skew_max_s, self.faults.skew_max_s)
        return 0.0

    def offline_for(self) -> float:
        return self.rng.uniform(min(2.0, self.faults.flap_offline_max_s), self.faults.flap_offline_max_s)
