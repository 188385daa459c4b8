"""Server-side sessions in Redis: the store (`store`), the web layer (`web`), the Lua in `lua/`."""

from __future__ import annotations

from starlette.datastructures import State

from ..api import auth
from ..features import Feature
from ..redis_client import RedisClient
from ..settings import Settings
from .store import SessionStore
from .web import (
    SessionDep,
    UserSessionDep,
    current_user,
    session_step,
    sessions_document,
    user_from_cookie,
    websocket_user,
)

# What routes and other features use; the rest is in .store and .web.
__all__ = [
    "SessionDep",
    "UserSessionDep",
    "current_user",
    "sessions_feature",
    "user_from_cookie",
    "websocket_user",
]


def _start(state: State, redis: RedisClient, settings: Settings) -> None:
    state.sessions = SessionStore(redis, settings, state.signals)


def sessions_feature() -> Feature:
    return Feature(
        name="sessions",
        start=_start,
        routers=[auth.router],
        before=session_step,
        document=sessions_document,
    )
