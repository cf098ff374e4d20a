"""Response bodies of the telemetry query API (beyond the spec, in its style: snake_case, RFC 3339 UTC)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FieldName = Literal["voltage", "current", "soc", "temperature"]
FIELDS: tuple[FieldName, ...] = ("voltage", "current", "soc", "temperature")
Agg = Literal["avg", "min", "max", "first", "last"]


class TelemetryPoint(BaseModel):
    """One reading (raw) or one bucket (with `readings`); only the asked fields are present."""

    model_config = ConfigDict(extra="forbid")

    ts: datetime = Field(description="the reading's time, or the bucket's start")
    readings: int | None = Field(default=None, description="readings in the bucket (bucketed answers)")
    voltage: float | None = Field(default=None, description="V")
    current: float | None = Field(default=None, description="A, + discharging, − charging")
    soc: float | None = Field(default=None, description="state of charge, %")
    temperature: float | None = Field(default=None, description="°C")


class TelemetrySeries(BaseModel):
    """A battery's readings over a range, raw (paged by `next_cursor`) or in buckets."""

    serial_number: str = Field(examples=["BAT001"])
    from_: datetime = Field(alias="from", description="start of the range (bucketed: of the first bucket)")
    to: datetime = Field(description="end of the range, exclusive")
    interval: str | None = Field(
        description="ISO 8601 bucket width; null for raw readings", examples=["PT1H"]
    )
    agg: Agg | None = Field(description="how each bucket's values were combined; null for raw")
    fields: list[FieldName]
    source: Literal["raw", "hourly", "daily"] = Field(
        description="where the answer was computed: raw readings or a stored rollup"
    )
    points: list[TelemetryPoint]
    next_cursor: str | None = Field(default=None, description="raw readings: pass as `cursor` for more")

    model_config = ConfigDict(populate_by_name=True)


class Switches(BaseModel):
    """A battery's two switches as its device confirmed them and as they were asked, compared switch
    by switch as the battery API's `in_sync` (columns of `batteries`, migration 0037)."""

    charging: bool | None = Field(
        description="charging on, as the device confirmed (null: it never reported)"
    )
    discharging: bool | None = Field(
        description="discharging on, as the device confirmed; off: the battery is disabled (null: unknown)"
    )
    desired_charging: bool = Field(description="charging on, as asked")
    desired_discharging: bool = Field(description="discharging on, as asked")
    in_sync: bool = Field(
        description="the device confirmed both switches as asked; false while a request is pending"
    )


class LatestReading(Switches):
    """A battery's newest reading with its state (null reading fields: it never reported)."""

    serial_number: str
    status: Literal["active", "inactive", "maintenance"] = Field(description="as the device confirmed it")
    online: bool
    last_seen_at: datetime | None
    ts: datetime | None = Field(description="the reading's time")
    voltage: float | None
    current: float | None
    soc: float | None
    temperature: float | None
    lat: float | None
    lon: float | None
    age_seconds: float | None = Field(description="seconds since the reading was taken")


class PointGeometry(BaseModel):
    type: Literal["Point"] = "Point"
    coordinates: tuple[float, float] = Field(description="[longitude, latitude], WGS84")


class PositionProperties(Switches):
    serial_number: str
    soc: float
    status: Literal["active", "inactive", "maintenance"] = Field(description="as the device confirmed it")
    online: bool
    last_seen: datetime = Field(description="time of the reading that gave the position")


class PositionFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    geometry: PointGeometry
    properties: PositionProperties


class PositionCollection(BaseModel):
    """GeoJSON (RFC 7946): one Point per battery at its latest reported position."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[PositionFeature]


class FleetBucket(BaseModel):
    """The caller's fleet in one bucket."""

    ts: datetime = Field(description="bucket start")
    batteries_reporting: int
    readings: int = Field(description="readings stored in the bucket")
    soc_mean: float | None = Field(description="mean SOC over the readings, %")
    soc_p10: float | None = Field(description="10th percentile of the batteries' mean SOC, %")
    soc_p50: float | None = Field(description="median of the batteries' mean SOC, %")
    soc_p90: float | None = Field(description="90th percentile of the batteries' mean SOC, %")
    energy_charged_kwh: float = Field(description="energy into the batteries (current < 0)")
    energy_discharged_kwh: float = Field(description="energy out of the batteries (current > 0)")


class FleetSeries(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime
    interval: str = Field(examples=["PT1H"])
    source: Literal["raw", "hourly", "daily"]
    buckets: list[FleetBucket]

    model_config = ConfigDict(populate_by_name=True)
