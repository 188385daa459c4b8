"""Request ids: every request gets one, echoed in `X-Request-ID` and carried by every log line
written while the request is served (JSON logs: the `request_id` field).

An incoming `X-Request-ID` (from a proxy or the caller) is kept when it is short and made of
safe characters only; anything else (too long, spaces, control characters, quotes) is replaced
by a new id, never echoed, so a client cannot forge log lines or headers with it.
"""

from __future__ import annotations

import logging
import os
import re
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_HEADER_KEY = HEADER.lower().encode()
# Letters, digits and . _ : + = / - (UUIDs, ULIDs, hex, base64), 1 to 128 of them.
SAFE_ID = re.compile(rb"[A-Za-z0-9._:+=/-]{1,128}")

current_request_id: ContextVar[str] = ContextVar("request_id", default="-")


def new_request_id() -> str:
    return os.urandom(16).hex()


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's id when it is safe to keep (the first X-Request-ID line), else a new one."""
    for name, value in headers:
        if name == _HEADER_KEY:
            if SAFE_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return new_request_id()


class RequestId:
    """Pure ASGI, outermost: sets the request's id for logging and adds it to the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope["headers"])
        header = (_HEADER_KEY, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        token = current_request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
        finally:
            current_request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Gives every record the id of the request being served ("-" outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True
