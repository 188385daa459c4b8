"""Real-time fan-out across worker processes: the hub (`hub`), the routes (`web`), topics and
positions (`topics`), leaderboards (`leaderboards`), the Lua in `lua/`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.datastructures import State

from ..features import Feature
from ..redis_client import RedisClient
from ..settings import Settings
from .hub import Hub
from .leaderboards import Leaderboards, build_leaderboard_router
from .web import Identify, anyone, build_router

__all__ = ["realtime_feature"]


def _start(state: State, redis: RedisClient, settings: Settings) -> None:
    hub = Hub(redis, settings, state.signals)
    state.realtime = hub
    state.leaderboards = Leaderboards(hub)
    sessions = getattr(state, "sessions", None)  # the sessions feature, when enabled
    if sessions is not None:
        # "Log out everywhere" closes the user's sockets too, in every worker.
        sessions.logged_out_everywhere.append(hub.disconnect_user)


@asynccontextmanager
async def _running(state: State) -> AsyncIterator[None]:
    hub: Hub = state.realtime
    leaderboards: Leaderboards = state.leaderboards
    await hub.start()
    try:
        yield
    finally:
        await leaderboards.stop()
        await hub.stop()


def _problem(state: State) -> str | None:
    hub: Hub = state.realtime
    return hub.problem()


def realtime_feature(
    identify: Identify = anyone,
    user: Callable[..., Any] = anyone,
    *,
    notifications: bool = False,
) -> Feature:
    """`identify` tells who opens a WebSocket and `user` who calls a route (a username, or
    None for anyone); `notifications` adds POST /realtime/notifications (needs users)."""
    return Feature(
        name="realtime",
        start=_start,
        routers=[
            build_router(identify, user, notifications=notifications),
            build_leaderboard_router(user),
        ],
        run=_running,
        ready=_problem,
    )
