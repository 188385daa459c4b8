"""The request path: every feature's Redis work for a request in one round trip.

Before routing, `RequestPath` finds the route (from a table built at the first request)
and asks each feature's step for its `Call`: the limiter's decision, the session read,
the cache lookup. The calls go out together (`redis_client.run_together`: one pipeline,
not MULTI, on standalone and Sentinel; every command at once on Cluster), so a request
waits for one round trip whatever is enabled. Each feature then gets its
own reply and keeps its own failure policy: a feature whose breaker is open is not asked,
a failed command fails only its own feature, and nothing is re-sent (a re-sent script
could count a request twice). A script Redis has not loaded yet (NOSCRIPT) is loaded and
run again alone: NOSCRIPT means it did not run.

A feature may answer the request at once (the limiter's 429, a cached response), and
may add headers to whatever the response is (the rate-limit headers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from redis.exceptions import NoScriptError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .features import Call, Feature, Outcome, RouteStep
from .redis_client import UNAVAILABLE_ERRORS, RedisClient, RedisUnavailableError, run_together
from .routes import RouteIndex

Steps = tuple[RouteStep, ...]

# Set in the request's state when Redis failed (or a breaker is open) before routing.
REDIS_FAILED = "redis_failed"


def redis_failed_before(request: Request) -> bool:
    """Did Redis fail this request already? Then more Redis work in the same request would
    most likely pay the same timeout again: skip it (one timeout per request at most)."""
    return bool(request.scope.get("state", {}).get(REDIS_FAILED))


def route_steps(app: FastAPI, features: Sequence[Feature], index: RouteIndex) -> list[Steps]:
    """For each route of the index, the steps of the features that need Redis before its
    endpoint; the outermost feature (listed last in main.py) first."""
    return [
        tuple(
            step
            for feature in reversed(features)
            if feature.before is not None and (step := feature.before(app.state, route)) is not None
        )
        for route in index.routes
    ]


def _judged(call: Call, reply: Any) -> Any:
    """The reply as the feature should see it, with the breaker told how Redis did."""
    if isinstance(reply, UNAVAILABLE_ERRORS):
        call.breaker.failed(reply)
        return RedisUnavailableError()
    call.breaker.succeeded()
    return reply


async def run_calls(client: RedisClient, calls: Sequence[Call]) -> list[Any]:
    """Each call's reply (or the error it met), in order; one round trip for them all."""
    replies: list[Any] = [RedisUnavailableError()] * len(calls)
    asked = [index for index, call in enumerate(calls) if call.breaker.allow()]
    if not asked:
        return replies
    commands = [
        ("EVALSHA", calls[i].script.sha, len(calls[i].keys), *calls[i].keys, *calls[i].args)
        for i in asked
    ]
    try:
        raw = await run_together(client, commands)
    except UNAVAILABLE_ERRORS as error:
        raw = [error] * len(asked)
    except BaseException:
        for index in asked:
            calls[index].breaker.abandoned()
        raise
    reloads = []
    for index, reply in zip(asked, raw, strict=True):
        if isinstance(reply, NoScriptError):
            reloads.append(index)
        replies[index] = _judged(calls[index], reply)
    for index in reloads:  # after a restart or SCRIPT FLUSH only
        call = calls[index]
        if not call.breaker.allow():
            replies[index] = RedisUnavailableError()
            continue
        try:
            reply = await call.script.load_and_run(client, call.keys, call.args)
        except Exception as error:  # unavailable, or a script error: the feature decides
            reply = error
        replies[index] = _judged(call, reply)
    return replies


class RequestPath:
    """Pure ASGI, outside every feature's middleware: runs the features' calls before
    routing, answers for a feature that wants to, and adds the features' headers."""

    def __init__(self, app: ASGIApp, features: Sequence[Feature]) -> None:
        self.app = app
        self.features = tuple(features)
        self.index = RouteIndex()
        self.steps: list[Steps] = []

    def steps_for(self, scope: Scope) -> Steps:
        application: FastAPI = scope["app"]
        if self.index.refresh(application):
            self.steps = route_steps(application, self.features, self.index)
        found = self.index.find(scope)
        return () if found is None else self.steps[found]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        steps = self.steps_for(scope)
        if not steps:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        calls = [call for step in steps if (call := step(request)) is not None]
        if not calls:
            await self.app(scope, receive, send)
            return
        replies = await run_calls(scope["app"].state.redis, calls)
        if any(isinstance(reply, RedisUnavailableError) for reply in replies):
            scope.setdefault("state", {})[REDIS_FAILED] = True
        outcomes = [call.settle(reply) for call, reply in zip(calls, replies, strict=True)]
        respond = next((outcome.respond for outcome in outcomes if outcome.respond), None)
        if respond is not None:
            await _release_others(calls, outcomes, respond)
        headers = _merged_headers(outcomes)
        if headers and isinstance(respond, Response):
            respond.raw_headers += [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
        elif headers:
            send = _adding_headers(send, headers)
        await (respond or self.app)(scope, receive, send)


async def _release_others(calls: Sequence[Call], outcomes: Sequence[Outcome], answer: Any) -> None:
    """Another feature answered: undo what the other replies took (a stampede lock)."""
    releases = [
        call.release()
        for call, outcome in zip(calls, outcomes, strict=True)
        if call.release is not None and outcome.respond is not answer
    ]
    if releases:
        await asyncio.gather(*releases)


def _merged_headers(outcomes: Sequence[Outcome]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for outcome in outcomes:
        if outcome.headers:
            merged.update(outcome.headers)
    return merged


def _adding_headers(send: Send, headers: dict[str, str]) -> Send:
    """Set these headers on the response (replacing any of the same names)."""
    added = [(name.encode(), value.encode("latin-1")) for name, value in headers.items()]
    names = {name for name, _ in added}

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            # A new list: a Response hands over its own header list, which may be shared.
            kept = [pair for pair in message.get("headers", ()) if pair[0] not in names]
            message = {**message, "headers": kept + added}
        await send(message)

    return send_with_headers
