"""Settings refuse what would be unsafe or meaningless, with a message that says why."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.settings import Settings


def test_defaults_point_at_a_local_redis() -> None:
    settings = Settings(_env_file=None)
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.app_env == "development"


def test_production_refuses_the_in_process_fake_redis() -> None:
    with pytest.raises(ValidationError, match="memory:// is an in-process fake"):
        Settings(_env_file=None, app_env="production", redis_url="memory://")


def test_development_accepts_the_in_process_fake_redis() -> None:
    assert Settings(_env_file=None, redis_url="memory://").uses_memory_redis


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://user:secret@redis.example:6380/0", "unix:///tmp/r.sock"],
)
def test_redis_url_accepts_plain_tls_and_credentials(url: str) -> None:
    assert Settings(_env_file=None, redis_url=url).redis_url == url


def test_redis_url_with_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValidationError, match="redis_url"):
        Settings(_env_file=None, redis_url="http://localhost:6379")


def test_address_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_CLUSTER_NODES", "10.0.0.1:7000, 10.0.0.2:7001")
    assert Settings(_env_file=None).redis_cluster_nodes == ["10.0.0.1:7000", "10.0.0.2:7001"]


def test_an_address_without_a_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", "sentinel-1")
    with pytest.raises(ValidationError, match="not host:port"):
        Settings(_env_file=None)


@pytest.mark.parametrize("prefix", ["", "{tag}", "has space", "x" * 65])
def test_key_prefix_that_would_break_the_key_layout_is_refused(prefix: str) -> None:
    with pytest.raises(ValidationError, match="redis_key_prefix"):
        Settings(_env_file=None, redis_key_prefix=prefix)


def test_settings_come_from_the_environment_without_a_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_MAX_CONNECTIONS", "7")
    assert Settings(_env_file=None).redis_max_connections == 7
