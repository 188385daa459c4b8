"""Logging: configured once, text for people or JSON lines for pipelines."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from {{ cookiecutter.package_name }}.log import JsonFormatter, configure_logging


def test_json_lines_carry_the_message_level_logger_and_extras() -> None:
    record = logging.makeLogRecord(
        {"name": "svc", "levelname": "WARNING", "msg": "slow %s", "args": ("redis",), "route": "/x"}
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "slow redis"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "svc"
    assert entry["route"] == "/x"
    assert entry["time"].endswith("+00:00")


def test_exceptions_are_kept_in_json_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.makeLogRecord({"msg": "failed", "exc_info": sys.exc_info()})
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"]


def test_configuring_twice_keeps_one_handler_of_ours(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("INFO", json_lines=True)
    configure_logging("WARNING", json_lines=False)
    root = logging.getLogger()
    ours = [h for h in root.handlers if type(h).__name__ == "_ServiceHandler"]
    assert len(ours) == 1
    assert root.level == logging.WARNING
    assert caplog.handler in root.handlers  # others' handlers (pytest's) are left alone
