"""Logging configured once, as text for people or JSON lines for log pipelines."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .request_id import RequestIdFilter

# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@dataclass(frozen=True)
class LogField:
    """Fields that `filter` gives every record (the request's id, the trace's), and how a
    text line shows them (`text`, a %-style piece); JSON lines carry them as they are."""

    filter: logging.Filter
    text: str


REQUEST_ID = LogField(RequestIdFilter(), "%(request_id)s")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value) for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so configuring again replaces only it."""


def configure_logging(level: str, *, json_lines: bool, fields: Sequence[LogField] = ()) -> None:
    """Every line carries its request's id, and the other `fields` (a feature's)."""
    handler = _ServiceHandler(sys.stderr)
    every = [REQUEST_ID, *fields]
    for field in every:
        handler.addFilter(field.filter)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        shown = " ".join(field.text for field in every)
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)-7s %(name)s [{shown}]: %(message)s")
        )
    root = logging.getLogger()
    for existing in [h for h in root.handlers if isinstance(h, _ServiceHandler)]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn installs its own handlers; let its records flow through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
