"""All configuration, read from PACKFLEET_* environment variables (or a .env file)."""

from __future__ import annotations

import socket
from decimal import Decimal
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets that appear in docs and examples; refusing them keeps a copy-pasted config out of production.
_PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "please-change", "dev"}


class MqttTarget:
    """A parsed `mqtt://[user:pass@]host:port` URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp"):
            raise ValueError(f"MQTT URL must start with mqtt://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"MQTT URL has no host: {url!r}")
        self.host: str = parts.hostname
        self.port: int = parts.port or 1883
        self.username: str | None = unquote(parts.username) if parts.username else None
        self.password: str | None = unquote(parts.password) if parts.password else None

    def __repr__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"mqtt://{user}{self.host}:{self.port}"


class SlaHours(BaseModel):
    """Hours to resolve a service ticket, by priority (`PACKFLEET_SERVICE_SLA_HOURS` as JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    critical: float = Field(default=8.0, gt=0, le=8760)
    high: float = Field(default=24.0, gt=0, le=8760)
    medium: float = Field(default=72.0, gt=0, le=8760)
    low: float = Field(default=120.0, gt=0, le=8760)


class MissingSetting(RuntimeError):
    """A setting the command needs is not set (the CLI says so in one line)."""


class Settings(BaseSettings):
    """Everything a packfleet process can be told; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="PACKFLEET_", env_file=".env", extra="ignore")

    database_url: str | None = None
    mqtt_url: str | None = None
    # MQTT protocol the services speak: 5 on Mosquitto (shared subscriptions, message expiry),
    # 3 (3.1.1) for the embedded amqtt broker, which speaks nothing newer.
    mqtt_protocol: Literal[3, 5] = 5
    data_dir: Path = Path(".packfleet")

    # Unset: `packfleet up` keeps a generated one in its data dir; other commands refuse to sign.
    jwt_secret: SecretStr | None = None
    jwt_ttl_minutes: int = Field(default=24 * 60, ge=1)
    auth_recheck_seconds: float = Field(default=30.0, ge=0)  # a deactivated user's token stops within this
    aadhaar_key: SecretStr | None = None  # Fernet key; derived from jwt_secret when unset

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = Field(default=1, ge=1)  # `packfleet api` processes on one port
    metrics_port: int | None = None  # Prometheus exporter of ingest/control; off when unset
    db_pool_max: int = Field(default=10, ge=1)
    # Battery-pack list pages kept per API process until a pack changes (0: build every request)
    api_page_cache_mb: int = Field(default=32, ge=0)

    # API request costs and metrics (issue 16 point 7): what a body may weigh before it is refused,
    # and the token that /metrics on the API port requires (unset: /metrics is not served there).
    api_max_json_bytes: int = Field(default=2**20, ge=256)
    api_max_csv_bytes: int = Field(default=32 * 2**20, ge=256)
    api_max_document_bytes: int = Field(default=5 * 2**20, ge=256)
    metrics_token: SecretStr | None = Field(default=None, min_length=16)

    rate_limit_auth: str = "5/minute"
    rate_limit_api: str = "100/minute"
    rate_limit_upload: str = "10/minute"
    redis_url: str | None = None

    # ingest
    ingest_batch_rows: int = Field(default=2000, ge=1)
    ingest_batch_ms: int = Field(default=200, ge=1)
    ingest_max_buffered: int = Field(default=50_000, ge=100)
    # One persistent MQTT session per worker: a container's hostname survives its restarts; two
    # workers on one host need ids of their own (two with one id knock each other off the broker).
    ingest_client_id: str = Field(default_factory=lambda: f"packfleet-ingest-{socket.gethostname()}"[:64])
    ingest_share_group: str = "ingest"

    # ingest: bounds on what a device can make the worker hold or keep
    # Readings older than this are refused (dead letter `old_ts`): a BMS whose clock reset says 1970.
    ingest_max_reading_age_days: int = Field(default=30, ge=1, le=3650)
    # What the worker holds unacknowledged, in MiB, beside ingest_max_buffered (readings): at either
    # bound it stops reading and the broker keeps the rest.
    ingest_max_buffered_mb: int = Field(default=64, ge=1, le=65536)
    # Dead letters (ingest's and control's) are deleted after this many days (the scheduler's
    # ingest.purge_dead_letters, hourly), so a misbehaving device cannot fill the disk.
    dead_letter_retention_days: int = Field(default=14, ge=1, le=3650)

    # control
    control_client_id: str | None = None  # MQTT session; default packfleet-control-<hostname>
    command_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    command_retry_base_seconds: float = Field(default=5.0, gt=0)
    command_retry_max_seconds: float = Field(default=300.0, gt=0)
    command_bulk_rate_per_s: float = Field(default=500.0, gt=0)

    # outboxes (packfleet/outbox.py; SMS, lender calls): delivery attempts and their backoff
    outbox_max_attempts: int = Field(default=8, ge=1, le=100)
    outbox_retry_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    outbox_retry_max_seconds: float = Field(default=900.0, gt=0, le=86_400)
    outbox_lease_seconds: float = Field(default=60.0, ge=1, le=3600)  # a claim's hold; sends time out at half
    outbox_poll_seconds: float = Field(default=5.0, gt=0, le=300)  # fallback when a NOTIFY is missed
    outbox_batch: int = Field(default=20, ge=1, le=1000)  # rows claimed and sent concurrently per worker

    # messaging (api/messaging): the SMS provider and how long an API answer waits for it
    sms_provider: Literal["console", "http"] = "console"
    sms_http_url: str | None = None  # the gateway's send URL (http provider)
    sms_http_auth_header: SecretStr | None = None  # "Name: value", e.g. "Authorization: Bearer …"
    # JSON object whose string values may hold {to}, {text} and {idempotency_key}
    sms_http_body_template: str = '{"to": "{to}", "message": "{text}", "reference": "{idempotency_key}"}'
    sms_http_body_format: Literal["json", "form"] = "json"
    sms_http_message_id_path: str = Field(default="message_id", pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
    sms_http_idempotency_header: str | None = "Idempotency-Key"
    sms_http_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    sms_answer_wait_seconds: float = Field(default=2.0, ge=0, le=10)  # send-sms waits this for "sent"

    # TimescaleDB policies (used only when the extension exists)
    telemetry_compress_after: str = "7 days"
    telemetry_retention: str = "365 days"

    # service desk and battery health (api/service/, api/analytics/)
    service_technician_max_load: int = Field(default=5, ge=1, le=100)  # open tickets per technician
    service_max_distance_km: float = Field(default=50.0, gt=0, le=20_000)  # farther is not a candidate
    service_sla_hours: SlaHours = Field(default_factory=lambda: SlaHours())
    service_visit_cost: Decimal = Field(default=Decimal("2000"), ge=0, le=10**9, decimal_places=2)
    health_service_threshold: float = Field(default=70.0, ge=1, le=100)  # health below: needs service
    health_risk_horizon_days: int = Field(default=90, ge=1, le=3650)  # at risk: crosses within this
    health_max_temperature_c: float = Field(default=60.0, ge=20, le=150)
    health_self_discharge_pct_per_day: float = Field(default=3.0, gt=0, le=100)
    health_window_days: int = Field(default=7, ge=1, le=90)  # readings a battery's first run reads
    health_job_minutes: int = Field(default=60, ge=1, le=1440)

    # telemetry queries and rollups (api/telemetry)
    telemetry_max_points: int = Field(default=10_000, ge=100, le=1_000_000)  # buckets one query answers
    # Plain PostgreSQL: how often the hours that received readings are re-aggregated, and how many
    # old readings one retention statement deletes (TimescaleDB's own policies do both there).
    telemetry_rollup_refresh_seconds: int = Field(default=60, ge=5, le=3600)
    telemetry_retention_batch_rows: int = Field(default=50_000, ge=1000, le=1_000_000)
    # finance (api/finance): overdue, late fees, the daily auto-disable; see the README's policy
    finance_timezone: str = "Asia/Kolkata"  # whose calendar decides "today" for due dates
    finance_overdue_threshold_days: int = Field(default=7, ge=1, le=365)  # disable beyond this many days
    finance_warning_days: int = Field(default=3, ge=0, le=60)  # warn this many days before the disable
    finance_disable_grace_hours: float = Field(default=24.0, ge=0, le=24 * 30)  # warning → disable, at least
    finance_disable_mode: Literal["charging", "full"] = "charging"
    finance_rest_current_a: float = Field(default=1.0, gt=0, le=100)  # |current| below this: at rest
    finance_fresh_reading_s: int = Field(default=300, ge=10, le=86_400)  # a reading this recent is fresh
    finance_disable_rate_per_s: float | None = Field(default=None, gt=0, le=10_000)  # None: bulk rate
    finance_job_time: str = Field(default="10:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")  # local time
    finance_jobs_enabled: bool = True
    finance_late_fee: Decimal = Field(default=Decimal("0"), ge=0, le=100_000, decimal_places=2)
    finance_late_fee_percent: Decimal = Field(default=Decimal("0"), ge=0, le=100, decimal_places=2)
    finance_late_fee_after_days: int = Field(default=0, ge=0, le=365)

    # NBFC (api/nbfc): lenders' API (called from nbfc_outbox), webhooks
    nbfc_api_url: str | None = Field(default=None, pattern=r"^https?://")  # lenders without their own URL
    nbfc_api_key: SecretStr | None = None  # sent as a bearer token to the lender's API
    nbfc_timeout_s: float = Field(default=10.0, gt=0, le=120)  # one call; attempts and backoff: outbox_*
    nbfc_webhook_tolerance_s: int = Field(default=300, ge=1, le=3600)

    storage_dir: Path | None = None  # uploaded documents; default <data_dir>/storage
    log_level: str = "INFO"
    log_json: bool | None = None  # JSON lines; unset: JSON unless stderr is a terminal

    @field_validator("mqtt_protocol", mode="before")
    @classmethod
    def _protocol_from_env(cls, value: object) -> object:
        # Environment values are strings, and a Literal[3, 5] does not coerce "3".
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @field_validator("database_url")
    @classmethod
    def _database_url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("PACKFLEET_DATABASE_URL must be a postgresql:// URL")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url_parses(cls, value: str | None) -> str | None:
        if value is not None:
            MqttTarget(value)
        return value

    @field_validator("finance_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if self.jwt_secret is None:
            return self
        secret = self.jwt_secret.get_secret_value()
        if secret.lower() in _PLACEHOLDER_SECRETS or len(secret) < 16:
            raise ValueError("PACKFLEET_JWT_SECRET must be a real secret of at least 16 characters")
        return self

    @property
    def mqtt(self) -> MqttTarget:
        if self.mqtt_url is None:
            raise MissingSetting("PACKFLEET_MQTT_URL is not set")
        return MqttTarget(self.mqtt_url)

    def require_jwt_secret(self) -> str:
        if self.jwt_secret is None:
            raise MissingSetting("PACKFLEET_JWT_SECRET is not set (at least 16 characters)")
        return self.jwt_secret.get_secret_value()

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise MissingSetting("PACKFLEET_DATABASE_URL is not set (or run `packfleet up`)")
        return self.database_url

    @property
    def documents_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "storage"
