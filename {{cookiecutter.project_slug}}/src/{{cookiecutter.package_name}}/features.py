"""What a feature plugs into the service. `main.py` lists the enabled features; `create_app`
applies each one's parts in that order, so a new feature touches no other feature's code."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import State
from starlette.middleware import Middleware

from .redis_client import RedisClient
from .settings import Settings

# Builds the feature's runtime objects when the app starts and puts them on app.state.
Start = Callable[[State, RedisClient, Settings], None]


@dataclass(frozen=True)
class Feature:
    name: str
    start: Start
    # Demo and API routes the feature serves.
    routers: Sequence[APIRouter] = ()
    # Pure ASGI middleware; a later feature's middleware wraps an earlier one's.
    middleware: Sequence[Middleware] = ()
    # App-wide dependencies (fastapi.Depends), decided before any route's own.
    dependencies: Sequence[Any] = ()
