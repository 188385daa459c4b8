"""Service settings: environment variables (no prefix), then `.env`, then these defaults."""

from __future__ import annotations

import enum
import re
import sys
from functools import lru_cache
from typing import Annotated, Literal, Self

from fastapi import Depends, Request
from pydantic import (
{%- if cookiecutter.rate_limiting != "none" %}
    AfterValidator,
{%- endif %}
    Field,
{%- if cookiecutter.rate_limiting != "none" %}
    IPvAnyNetwork,
{%- endif %}
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MEMORY_URL = "memory://"
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://", MEMORY_URL)

CommaSeparated = Annotated[list[str], NoDecode]
{%- if cookiecutter.rate_limiting != "none" %}
RATE_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
RATE_RE = re.compile(r"^\s*([1-9]\d*)\s*/\s*(second|minute|hour|day)\s*$")


def parse_rate(text: str) -> tuple[int, int]:
    """`N/second`, `N/minute`, `N/hour` or `N/day` (N >= 1) as (limit, period in seconds)."""
    match = RATE_RE.match(text)
    if not match:
        raise ValueError(f"{text!r}: write N/second, N/minute, N/hour or N/day, e.g. 100/minute")
    return int(match[1]), RATE_PERIODS[match[2]]


def _checked_rate(text: str) -> str:
    parse_rate(text)
    return text


Rate = Annotated[str, AfterValidator(_checked_rate)]
CommaSeparatedNetworks = Annotated[list[IPvAnyNetwork], NoDecode]
{%- endif %}


class AppEnv(enum.StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # Service
    app_name: str = "{{ cookiecutter.project_name }}"
    app_env: AppEnv = AppEnv.DEVELOPMENT
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    max_body_bytes: int = Field(default=1_048_576, ge=1)

    # Redis connection
    redis_url: str = "redis://localhost:6379/0"
    redis_topology: Literal["standalone", "sentinel", "cluster"] = "{{ cookiecutter.redis_topology }}"
    redis_key_prefix: str = "{{ cookiecutter.project_slug }}"
    redis_max_connections: int = Field(default=50, ge=1, le=10_000)
    redis_pool_timeout_seconds: float = Field(default=1.0, gt=0)
    redis_socket_timeout_seconds: float = Field(default=0.5, gt=0)
    redis_connect_timeout_seconds: float = Field(default=0.5, gt=0)
    redis_health_check_interval_seconds: int = Field(default=15, ge=0)
    redis_cluster_nodes: CommaSeparated = []
    redis_sentinels: CommaSeparated = []
    redis_sentinel_service: str = "mymaster"
    redis_sentinel_password: SecretStr | None = None
    health_timeout_seconds: float = Field(default=0.8, gt=0, le=10)
{%- if cookiecutter.__uses_breaker %}

    # Redis outages: after this many failures in a row, skip Redis for the cooldown
    redis_breaker_threshold: int = Field(default=5, ge=1)
    redis_breaker_cooldown_seconds: float = Field(default=1.0, gt=0)
{%- endif %}
{%- if cookiecutter.use_cache %}

    # Cache
    cache_ttl_seconds: float = Field(default=60, gt=0)
    cache_stale_seconds: float = Field(default=30, ge=0)
    cache_lock_ttl_seconds: float = Field(default=10, gt=0)
    cache_max_body_bytes: int = Field(default=1_048_576, gt=0)
    demo_compute_delay_ms: int = Field(default=200, ge=0)
{%- endif %}
{%- if cookiecutter.use_sessions %}

    # Sessions
    session_secret: SecretStr | None = None
    session_cookie_name: str = Field(default="session", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    session_cookie_secure: bool | None = None
    session_cookie_samesite: Literal["lax", "strict"] = "lax"
    session_idle_ttl_seconds: int = Field(default=1800, ge=1)
    session_max_age_seconds: int = Field(default=43200, ge=1)
    session_touch_interval_seconds: int = Field(default=300, ge=0)
    password_hash_cost: int = Field(default=15, ge=10, le=20)
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}

    # Rate limiting
    rate_limit_default: Rate = "100/minute"
{%- if cookiecutter.__metrics %}
    rate_limit_exempt_paths: CommaSeparated = ["/health", "/metrics"]
{%- else %}
    rate_limit_exempt_paths: CommaSeparated = ["/health"]
{%- endif %}
    rate_limit_legacy_headers: bool = False
    trusted_proxies: CommaSeparatedNetworks = []
{%- endif %}
{%- if cookiecutter.use_realtime %}

    # Real-time (WebSocket and SSE fan-out)
    realtime_allowed_origins: CommaSeparated = []
    realtime_probe_seconds: float = Field(default=10, gt=0, le=300)
    realtime_history_size: int = Field(default=1000, ge=1, le=1_000_000)
    realtime_history_ttl_seconds: int = Field(default=86400, ge=1)
    realtime_queue_messages: int = Field(default=256, ge=1)
    realtime_queue_bytes: int = Field(default=1_048_576, ge=1024)
    realtime_send_timeout_seconds: float = Field(default=1.0, gt=0)
    realtime_sse_heartbeat_seconds: float = Field(default=15, gt=0)
{%- endif %}
{%- if cookiecutter.__metrics %}

    # Metrics: GET /metrics on a port of its own (METRICS_PORT=0: on the service's port), and
    # with METRICS_TOKEN set, only for `Authorization: Bearer <METRICS_TOKEN>`, on either
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_token: SecretStr | None = None
{%- endif %}
{%- if cookiecutter.__traces %}

    # Traces, set by OpenTelemetry's own variables: exported over OTLP/HTTP to
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is, or else to OTEL_EXPORTER_OTLP_ENDPOINT
    # plus /v1/traces. Neither set, OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true:
    # nothing is recorded or sent. The SDK reads the other OTEL_* variables itself.
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None
    otel_exporter_otlp_protocol: Literal["http/protobuf"] = "http/protobuf"
    otel_traces_exporter: Literal["otlp", "none"] = "otlp"
    otel_sdk_disabled: bool = False
    otel_service_name: str = Field(default="{{ cookiecutter.project_slug }}", min_length=1)
{%- endif %}

    @field_validator(
        "redis_cluster_nodes",
        "redis_sentinels",
{%- if cookiecutter.rate_limiting != "none" %}
        "rate_limit_exempt_paths",
        "trusted_proxies",
{%- endif %}
{%- if cookiecutter.use_realtime %}
        "realtime_allowed_origins",
{%- endif %}
        mode="before",
    )
    @classmethod
    def _split_comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("redis_cluster_nodes", "redis_sentinels")
    @classmethod
    def _check_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address!r} is not host:port")
        return value

    @field_validator(
        "app_env",
        "redis_topology",
{%- if cookiecutter.use_sessions %}
        "session_cookie_samesite",
{%- endif %}
        mode="before",
    )
    @classmethod
    def _lower_case(cls, value: object) -> object:
        # Choices are matched in any letter case: APP_ENV=Production, REDIS_TOPOLOGY=Cluster.
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        # LOG_LEVEL=info, the casing uvicorn itself uses, means INFO.
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(REDIS_URL_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(REDIS_URL_SCHEMES)}")
        return value

    @field_validator("redis_key_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        # Braces would turn the prefix into a Cluster hash tag and break the key layout.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", value):
            raise ValueError("use 1-64 letters, digits, '_', '.', ':' or '-'")
        return value

{%- if cookiecutter.__metrics %}

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters (or leave it unset)")
        return value
{%- endif %}
{%- if cookiecutter.__traces %}

    @field_validator("otel_exporter_otlp_endpoint", "otel_exporter_otlp_traces_endpoint")
    @classmethod
    def _check_otlp_endpoint(cls, value: str | None) -> str | None:
        if not value:
            return None  # empty is unset, as OpenTelemetry reads it
        if not re.fullmatch(r"https?://[^/?#\s]+(/\S*)?", value):
            raise ValueError("use an http:// or https:// URL, e.g. http://otel-collector:4318")
        return value

    @property
    def traces_endpoint(self) -> str | None:
        """Where traces are sent, or None: they are not recorded."""
        if self.otel_sdk_disabled or self.otel_traces_exporter == "none":
            return None
        if self.otel_exporter_otlp_traces_endpoint:
            return self.otel_exporter_otlp_traces_endpoint
        if self.otel_exporter_otlp_endpoint:
            return self.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        return None
{%- endif %}

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.app_env is not AppEnv.PRODUCTION:
            return self
        if self.uses_memory_redis:
            raise ValueError(
                "REDIS_URL=memory:// is an in-process fake for development: its data dies "
                "with the process and is not shared between workers, so APP_ENV=production "
                "refuses it. Point REDIS_URL at a real Redis."
            )
        if self.redis_topology == "sentinel" and not self.redis_sentinels:
            raise ValueError("REDIS_TOPOLOGY=sentinel needs REDIS_SENTINELS (host:port,...)")
{%- if cookiecutter.use_sessions %}
        secret = self.session_secret.get_secret_value() if self.session_secret else ""
        if len(secret) < 32:
            raise ValueError(
                "APP_ENV=production needs SESSION_SECRET of at least 32 characters "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if self.session_cookie_secure is False:
            raise ValueError("APP_ENV=production refuses SESSION_COOKIE_SECURE=false")
{%- endif %}
{%- if cookiecutter.use_realtime %}
        if not self.realtime_allowed_origins:
            raise ValueError(
                "APP_ENV=production needs REALTIME_ALLOWED_ORIGINS, the exact origins whose "
                "pages may open WebSockets (e.g. https://app.example.com)"
            )
{%- endif %}
{%- if cookiecutter.__metrics %}
        if self.metrics_port == 0 and self.metrics_token is None:
            raise ValueError(
                "APP_ENV=production refuses /metrics without authentication on the service's "
                "port: set METRICS_PORT (a port of its own) or METRICS_TOKEN"
            )
{%- endif %}
        return self

    @property
    def uses_memory_redis(self) -> bool:
        return self.redis_url.startswith(MEMORY_URL)

    @property
    def is_production(self) -> bool:
        return self.app_env is AppEnv.PRODUCTION
{%- if cookiecutter.use_realtime %}

    @property
    def realtime_origins(self) -> frozenset[str]:
        """Origins allowed to open WebSockets: REALTIME_ALLOWED_ORIGINS, or outside
        production when it is empty, the service's own local addresses (`make run`)."""
        if self.realtime_allowed_origins:
            return frozenset(self.realtime_allowed_origins)
        return frozenset({"http://127.0.0.1:8000", "http://localhost:8000"})
{%- endif %}
{%- if cookiecutter.use_sessions %}

    @property
    def session_cookie_is_secure(self) -> bool:
        """Secure unless said otherwise, except in development and tests over plain http."""
        if self.session_cookie_secure is None:
            return self.is_production
        return self.session_cookie_secure

    @property
    def session_cookie_key(self) -> str:
        """`__Host-` pins a Secure cookie to this host and path `/` (no Domain attribute)."""
        prefix = "__Host-" if self.session_cookie_is_secure else ""
        return prefix + self.session_cookie_name
{%- endif %}


def configuration_errors(error: ValidationError) -> list[str]:
    """One line per bad variable: its name, what is wrong, and a good value when there is
    a default to show. Secret values are never echoed."""
    lines = []
    for problem in error.errors(include_url=False):
        if not problem["loc"]:  # a rule over several variables: its message names them
            lines.append(problem["msg"].removeprefix("Value error, "))
            continue
        name = str(problem["loc"][0])
        field = Settings.model_fields.get(name)
        secret = field is None or "SecretStr" in str(field.annotation)
        shown = "" if secret else f"={problem['input']!r}"
        message = problem["msg"].removeprefix("Value error, ")
        line = f"{name.upper()}{shown}: {message}"
        if field is not None and field.default not in (None, [], "") and not secret:
            default = field.default.value if isinstance(field.default, enum.Enum) else field.default
            line += f" (e.g. {name.upper()}={default})"
        lines.append(line)
    return lines


def load_settings() -> Settings:
    """Settings from the environment and .env. A bad value stops the process with one line
    per bad variable on stderr, and exit status 2: no traceback."""
    try:
        return Settings()
    except ValidationError as error:
        for line in configuration_errors(error):
            print(f"configuration error: {line}", file=sys.stderr)
        raise SystemExit(2) from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()


async def get_app_settings(request: Request) -> Settings:
    """The settings the running app was created with (tests create apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
