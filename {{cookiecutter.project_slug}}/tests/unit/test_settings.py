"""Settings refuse what would be unsafe or meaningless, with a message that says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.settings import Settings, configuration_errors, load_settings

SRC = Path(__file__).resolve().parents[2] / "src"

# (variable, bad value): each must end startup with one line naming the variable.
BAD_SETTINGS = [
    ("LOG_LEVEL", "verbose"),
    ("LOG_JSON", "perhaps"),
    ("APP_ENV", "staging"),
    ("REDIS_URL", "http://localhost:6379"),
    ("REDIS_TOPOLOGY", "mesh"),
    ("REDIS_MAX_CONNECTIONS", "0"),
    ("REDIS_MAX_CONNECTIONS", "many"),
    ("REDIS_SOCKET_TIMEOUT_SECONDS", "-1"),
    ("REDIS_KEY_PREFIX", "{tag}"),
    ("REDIS_SENTINELS", "sentinel-1"),
    ("REDIS_CLUSTER_NODES", "node-1:99999"),
    ("HEALTH_TIMEOUT_SECONDS", "60"),
{%- if cookiecutter.use_realtime %}
    ("REALTIME_PROBE_SECONDS", "0"),
    ("REALTIME_HISTORY_SIZE", "none"),
    ("REALTIME_QUEUE_BYTES", "10"),
{%- endif %}
{%- if cookiecutter.__traces %}
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "grpc://collector:4317"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ("OTEL_TRACES_EXPORTER", "zipkin"),
    ("OTEL_SDK_DISABLED", "maybe"),
{%- endif %}
]


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


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS)
def test_a_bad_setting_stops_startup_with_one_line_naming_it(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    lines = capsys.readouterr().err.splitlines()
    assert stopped.value.code == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"configuration error: {name}=")


def test_a_rule_over_several_settings_says_which_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("REDIS_URL", "memory://")
    with pytest.raises(SystemExit):
        load_settings()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "REDIS_URL=memory://" in lines[0]


def test_a_good_value_is_suggested_where_there_is_a_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_TOPOLOGY", "mesh")
    with pytest.raises(SystemExit):
        load_settings()
    assert "(e.g. REDIS_TOPOLOGY=" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("LOG_LEVEL", "info", "log_level", "INFO"),
        ("APP_ENV", "Test", "app_env", "test"),
        ("REDIS_TOPOLOGY", "STANDALONE", "redis_topology", "standalone"),
    ],
)
def test_choices_are_accepted_in_any_letter_case(
    name: str, value: str, field: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    assert getattr(Settings(_env_file=None), field) == expected


def test_the_service_started_with_a_bad_setting_prints_no_traceback(tmp_path: Path) -> None:
    code = "from {{ cookiecutter.package_name }}.main import create_app; create_app()"
    bad = {"LOG_LEVEL": "verbose", "REDIS_MAX_CONNECTIONS": "0"}
    env = {**os.environ, "PYTHONPATH": str(SRC), **bad}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert [line.split("=")[0] for line in result.stderr.splitlines()] == [
        "configuration error: LOG_LEVEL",
        "configuration error: REDIS_MAX_CONNECTIONS",
    ]


def test_a_bad_secret_is_named_but_never_echoed() -> None:
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None, redis_sentinel_password=987654321)
    lines = configuration_errors(error.value)
    assert len(lines) == 1
    assert lines[0].startswith("REDIS_SENTINEL_PASSWORD: ")
    assert "987654321" not in lines[0]
