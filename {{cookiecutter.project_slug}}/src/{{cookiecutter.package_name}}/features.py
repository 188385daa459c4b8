"""What a feature plugs into the service. `main.py` lists the enabled features; `create_app`
applies each one's parts in that order, so a new feature touches no other feature's code.

A feature that needs Redis before a route's endpoint runs (the limiter's decision, the
session read, the cache lookup) says so with `before`: it returns one `Call` per request,
and `request_path.RequestPath` sends the calls of every feature together, in one round
trip, then hands each feature its own reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import RouteContext
from fastapi.security.base import SecurityBase
from fastapi.telemetry import TelemetryConfig
from starlette.datastructures import State
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from .contract import Document
from .log import LogField
from .redis_client import RedisClient
from .scripts import LuaScript
from .settings import Settings
from .signals import Signals

# Builds the feature's runtime objects when the app starts and puts them on app.state.
Start = Callable[[State, RedisClient, Settings], None]


@dataclass(frozen=True)
class Outcome:
    """What a feature made of its reply."""

    # Answer the request now, without routing (a 429, a cached response).
    respond: ASGIApp | None = None
    # Headers for whatever response the request gets (the rate-limit headers).
    headers: Mapping[str, str] | None = None


NOTHING = Outcome()


class Breaker(Protocol):
    """The part of a feature's circuit breaker that a Call needs."""

    def allow(self) -> bool: ...
    def succeeded(self) -> None: ...
    def failed(self, error: BaseException) -> None: ...
    def abandoned(self) -> None: ...


@dataclass(eq=False, slots=True)
class Call:
    """One Lua script a feature needs run before the endpoint, and what to do with its reply.

    `settle` gets the script's reply; RedisUnavailableError when Redis could not be asked
    (the feature's breaker is open, or Redis failed); or the exception of a script error.
    `release` undoes what the reply took (the cache's stampede lock) when another feature
    answered the request instead.
    """

    script: LuaScript
    keys: list[str]
    args: list[Any]
    breaker: Breaker
    settle: Callable[[Any], Outcome]
    release: Callable[[], Awaitable[None]] | None = None


# For one route: the Call a request to it needs (None: nothing this time).
RouteStep = Callable[[Request], Call | None]
# Asked once per API route, at the first request: this feature's step for it, or None. The
# route is FastAPI's view of it as mounted: its full path, and the dependencies of the
# routers that include it too.
Before = Callable[[State, RouteContext], RouteStep | None]


@dataclass(frozen=True)
class Feature:
    name: str
    start: Start | None = None
    # Demo and API routes the feature serves.
    routers: Sequence[APIRouter] = ()
    # Pure ASGI middleware; a later feature's middleware wraps an earlier one's.
    middleware: Sequence[Middleware] = ()
    # Redis work before the endpoint, sent together with the other features' (see above).
    before: Before | None = None
    # Given the settings, how the feature documents the operations it works on (contract.py).
    document: Callable[[Settings], Document] | None = None
    # Work that runs while the app does (entered after every feature started, left at
    # shutdown), such as the real-time hub's subscriber.
    run: Callable[[State], AbstractAsyncContextManager[None]] | None = None
    # Why the feature cannot serve right now, or None: /health/ready answers 503 meanwhile.
    ready: Callable[[State], str | None] | None = None
    # Listens to what every part of the service signals (signals.py), such as the metrics;
    # made before any feature starts, and found by the features on `state.signals`.
    listener: Callable[[Settings], Signals] | None = None
    # Pure ASGI middleware around everything else, the request path and the body limit
    # included (it sees every request, even one answered before routing).
    outer_middleware: Sequence[Middleware] = ()
    # Given the settings, what the feature asks of FastAPI's native OpenTelemetry (the
    # traces: a tracer provider); create_app merges them, and turns the rest off.
    telemetry: Callable[[Settings], TelemetryConfig] | None = None
    # Fields every log line carries while the feature runs (the traces: the trace's id).
    log_fields: Sequence[LogField] = ()


IDENTIFIES_CALLER = "__identifies_caller__"


Dependency = TypeVar("Dependency", bound=Callable[..., Any])


def identifies_caller(dependency: Dependency) -> Dependency:
    """Mark a dependency that decides who the caller is (a session, a token): a route that
    uses it is never answered before routing, so the dependency always runs."""
    setattr(dependency, IDENTIFIES_CALLER, True)
    return dependency


def uses_dependency(route: RouteContext, wanted: Callable[[Callable[..., Any]], bool]) -> bool:
    """Does `wanted` hold for any dependency of the route, however deeply nested?"""
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is not None and wanted(dependant.call):
            return True
        pending.extend(dependant.dependencies)
    return False


def route_identifies_caller(route: RouteContext) -> bool:
    """Does the route use a marked dependency, or a FastAPI security scheme?"""
    return uses_dependency(
        route,
        lambda call: isinstance(call, SecurityBase) or getattr(call, IDENTIFIES_CALLER, False),
    )
