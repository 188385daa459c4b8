"""Running the app in tests: settings made for a test, the lifespan, an in-process client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.redis_client import RedisClient
from {{ cookiecutter.package_name }}.settings import MEMORY_URL, Settings

SettingsFactory = Callable[..., Settings]


# What APP_ENV=production needs besides a real Redis, for tests that run as production.
PRODUCTION: dict[str, Any] = {
    "app_env": "production",
{%- if cookiecutter.use_sessions %}
    "session_secret": "p" * 40,
{%- endif %}
{%- if cookiecutter.use_realtime %}
    "realtime_allowed_origins": ["https://app.example.com"],
{%- endif %}
{%- if cookiecutter.__metrics %}
    "metrics_token": "m" * 32,
{%- endif %}
}


def settings_for_test(**overrides: Any) -> Settings:
    """Settings for tests: no .env, APP_ENV=test, a key prefix of the test's own, and the
    in-process fake Redis unless the overrides point elsewhere."""
    values: dict[str, Any] = {
        "app_env": "test",
        "redis_url": MEMORY_URL,
        "redis_topology": "standalone",
        "redis_key_prefix": f"test-{uuid.uuid4().hex[:12]}",
        "log_level": "WARNING",
{%- if cookiecutter.__metrics %}
        "metrics_port": 0,  # /metrics on the app's own port: nothing else to bind
{%- endif %}
{%- if cookiecutter.__traces %}
        # No traces sent anywhere, whatever the environment says (a test gives its own).
        "otel_exporter_otlp_endpoint": None,
        "otel_exporter_otlp_traces_endpoint": None,
{%- endif %}
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def redis(self) -> RedisClient:
        redis: RedisClient = self.app.state.redis
        return redis

    @property
    def settings(self) -> Settings:
        settings: Settings = self.app.state.settings
        return settings


@asynccontextmanager
async def serve(
    settings: Settings, app: FastAPI | None = None, *, raise_app_exceptions: bool = True
) -> AsyncIterator[Service]:
    """Run the app's lifespan and talk to it in-process over ASGI."""
    app = app or create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(
            app=app, client=("203.0.113.7", 51000), raise_app_exceptions=raise_app_exceptions
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Service(app=app, client=client)


async def logged_while_serving(
    app: FastAPI, capfd: pytest.CaptureFixture[str], path: str, headers: dict[str, str]
) -> list[str]:
    """The stderr lines `app` writes while it serves one GET of `path` with `headers`."""
    async with serve(app.state.settings, app) as service:
        capfd.readouterr()
        await service.client.get(path, headers=headers)
    return capfd.readouterr().err.splitlines()
