"""HTTP response caching on top of the store: the `cached` route decorator and the middleware
that stores what the route computed.

* A hit is one round trip (one EVALSHA that also answers If-None-Match). A miss is at most
  three: the lookup, the endpoint's own work, the store.
* Never cached: non-2xx responses, responses that set cookies or say no-store/private,
  requests with `Cache-Control: no-store`; `no-cache` recomputes and refreshes the entry.
  A request with `Authorization` bypasses the cache unless the route varies on it.
* A route's own `Vary` header is kept, on hits too, merged with the headers the route
  declared in `vary=`.
* Fails open: when Redis is down or slow the endpoint is computed and served uncached.
"""

from __future__ import annotations

import functools
import inspect
import json
import secrets
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..breaker import RedisUnavailableError
from ..scripts import digest
from .store import Cache, CacheKeys, Found, check_namespace, entity_tag

PLAN_KEY = "cache_plan"
# Headers about one transmission, or that the cache sets itself: never stored.
UNSTORED_HEADERS = frozenset(
    {
        "age",
        "cache-control",
        "connection",
        "content-length",
        "date",
        "etag",
        "keep-alive",
        "server",
        "set-cookie",
        "transfer-encoding",
        "x-cache",
    }
)

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


@dataclass(frozen=True)
class CachePolicy:
    namespace: str
    ttl_seconds: float | None = None
    vary: tuple[str, ...] = ()
    public: bool = False


def parse_if_none_match(value: str | None) -> tuple[str, ...]:
    """Entity tags from If-None-Match; weak tags compare equal to strong ones (RFC 9110)."""
    if not value:
        return ()
    tags = []
    for part in value.split(","):
        tag = part.strip().removeprefix("W/")
        if tag == "*" or (len(tag) >= 2 and tag.startswith('"') and tag.endswith('"')):
            tags.append(tag)
    return tuple(tags[:32])


def cache_directives(*values: str | None) -> set[str]:
    """The directive names of Cache-Control (and Pragma) header values, lower-cased."""
    return {
        part.split("=", 1)[0].strip().lower()
        for value in values
        if value
        for part in value.split(",")
        if part.strip()
    }


def request_variant(query_string: str, vary: Iterable[str], headers: Headers) -> str:
    """One response per canonical (sorted) query string and per value of each Vary header."""
    query = urlencode(sorted(parse_qsl(query_string, keep_blank_values=True)))
    varied = "\n".join(f"{name}:{headers.get(name, '')}" for name in vary)
    return digest(f"{query}\n{varied}", 16)


def merge_vary(headers: MutableHeaders, names: Sequence[str]) -> None:
    """Add these header names to Vary, keeping what the route set and naming each once."""
    present = [part.strip() for part in headers.get("vary", "").split(",") if part.strip()]
    known = {part.lower() for part in present}
    present += [name.title() for name in names if name.lower() not in known]
    if present:
        headers["vary"] = ", ".join(present)


def cache_headers(
    policy: CachePolicy, etag: str, fresh_ms: int, label: str, age_ms: int | None = None
) -> dict[str, str]:
    scope = "public" if policy.public else "private"
    headers = {
        "etag": etag,
        "cache-control": f"{scope}, max-age={fresh_ms // 1000}",
        "x-cache": label,
    }
    if age_ms is not None:
        headers["age"] = str(max(age_ms, 0) // 1000)
    return headers


@dataclass
class Plan:
    """One request's dealings with the cache: what it looked up, and whether the response
    on its way out should be stored (when this caller holds the lock)."""

    cache: Cache
    policy: CachePolicy
    keys: CacheKeys | None = None
    variant: str = ""
    token: str = ""
    found: Found | None = None
    etags: tuple[str, ...] = ()
    finished: bool = field(default=False)

    @property
    def owns_lock(self) -> bool:
        return self.found is not None and self.found.owns_lock and not self.finished

    async def abandon(self) -> None:
        if self.owns_lock and self.keys is not None:
            await self.cache.release(self.keys.lock, self.token)
        self.finished = True

    async def cached_response(self, request: Request) -> Response | None:
        """The cached response for this request, or None to compute it (then the plan says
        what the middleware should do with the computed response)."""
        policy = self.policy
        directives = cache_directives(
            request.headers.get("cache-control"), request.headers.get("pragma")
        )
        if "no-store" in directives or (
            "authorization" in request.headers and "authorization" not in policy.vary
        ):
            return None
        self.variant = request_variant(request.url.query, policy.vary, request.headers)
        self.keys = self.cache.resource_keys(policy.namespace, request.url.path, self.variant)
        self.token = secrets.token_hex(16)
        self.etags = parse_if_none_match(request.headers.get("if-none-match"))
        try:
            found = await self.cache.obtain(
                self.keys,
                self.variant,
                self.token,
                take_lock=request.method == "GET",
                refresh="no-cache" in directives,
                etags=self.etags,
            )
        except RedisUnavailableError:
            return None
        if not found.usable:
            self.found = found
            return None
        self.finished = True
        label = "STALE" if found.outcome.startswith("stale") else "HIT"
        response = Response(status_code=304 if found.outcome.endswith("-match") else found.status)
        headers = response.headers
        if response.status_code != 304:
            body = found.body or b""
            if request.method != "HEAD":
                response.body = body
            headers["content-length"] = str(len(body))
            for name, value in json.loads(found.headers) if found.headers else []:
                headers.append(name, value)
        else:
            del headers["content-length"]
        headers.update(cache_headers(policy, found.etag, found.fresh_ms, label, found.age_ms))
        merge_vary(headers, policy.vary)
        return response

    async def finish(self, start: Message, body: bytes, send: Send) -> None:
        """Store the computed response if it may be cached, then send it (or a 304)."""
        headers = MutableHeaders(scope=start)
        status = int(start["status"])
        merge_vary(headers, self.policy.vary)
        cacheable = (
            self.owns_lock
            and 200 <= status < 300
            and status != 206
            and "set-cookie" not in headers
            and not {"no-store", "private"} & cache_directives(headers.get("cache-control"))
        )
        if not cacheable or self.keys is None or self.found is None:
            await self.abandon()
            headers["x-cache"] = "MISS"
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        ttl_ms = self.cache.ttl_ms(self.policy.ttl_seconds)
        stored = json.dumps(
            [[name, value] for name, value in headers.items() if name not in UNSTORED_HEADERS]
        ).encode()
        etag = entity_tag(body)
        await self.cache.store(
            self.keys, self.variant, self.token, self.found, body, etag, stored, ttl_ms, status
        )
        self.finished = True
        headers.update(cache_headers(self.policy, etag, ttl_ms, "MISS"))
        if etag in self.etags or "*" in self.etags:
            for name in ("content-length", "content-type"):
                if name in headers:
                    del headers[name]
            await send({**start, "status": 304})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(start)
        await send({"type": "http.response.body", "body": body})


def cached(
    *,
    namespace: str,
    ttl_seconds: float | None = None,
    vary: Sequence[str] = (),
    public: bool = False,
) -> Callable[[Endpoint], Endpoint]:
    """Cache a GET/HEAD route's response in Redis.

    Put it under the route decorator. `ttl_seconds` defaults to CACHE_TTL_SECONDS; `vary`
    names the request headers the response depends on (they become part of the key and
    the Vary header); `public` allows shared caches (Cache-Control: public).
    """
    policy = CachePolicy(
        check_namespace(namespace), ttl_seconds, tuple(name.lower() for name in vary), public
    )

    def decorate(endpoint: Endpoint) -> Endpoint:
        hints = typing.get_type_hints(endpoint, include_extras=True)
        signature = inspect.signature(endpoint)
        parameters = [
            parameter.replace(annotation=hints.get(parameter.name, parameter.annotation))
            for parameter in signature.parameters.values()
        ]
        request_name = next((p.name for p in parameters if p.annotation is Request), None)
        if request_name is None:
            request_name = "cache_request_"
            hidden = inspect.Parameter(
                request_name, inspect.Parameter.KEYWORD_ONLY, annotation=Request
            )
            if parameters and parameters[-1].kind is inspect.Parameter.VAR_KEYWORD:
                parameters.insert(len(parameters) - 1, hidden)
            else:
                parameters.append(hidden)
            passes_request = False
        else:
            passes_request = True
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            request: Request = kwargs[request_name] if passes_request else kwargs.pop(request_name)
            plan = Plan(cache=request.app.state.cache, policy=policy)
            setattr(request.state, PLAN_KEY, plan)
            response = await plan.cached_response(request)
            if response is not None:
                return response
            try:
                if is_async:
                    return await endpoint(*args, **kwargs)
                return await run_in_threadpool(endpoint, *args, **kwargs)
            except BaseException:
                await plan.abandon()
                raise

        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters,
            return_annotation=hints.get("return", signature.return_annotation),
        )
        return cast(Endpoint, wrapper)

    return decorate


class CacheMiddleware:
    """Pure ASGI: finishes what `cached` started, once the endpoint's response exists.

    Buffers the body of a response that may be stored (up to CACHE_MAX_BODY_BYTES), stores
    it, adds ETag/Cache-Control/Vary/X-Cache, and answers If-None-Match with a 304.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        responder = _CachingResponder(scope, send)
        try:
            await self.app(scope, receive, responder.send)
        finally:
            plan = responder.plan
            if plan is not None and plan.owns_lock:
                await plan.abandon()


class _CachingResponder:
    """Holds back the response of a request the cache may store, then hands it to the plan."""

    def __init__(self, scope: Scope, send: Send) -> None:
        self.state: dict[str, Any] = scope.setdefault("state", {})
        self.downstream = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.passthrough = False

    @property
    def plan(self) -> Plan | None:
        plan: Plan | None = self.state.get(PLAN_KEY)
        return plan

    async def send(self, message: Message) -> None:
        plan = self.plan
        if plan is None or plan.finished or self.passthrough:
            await self.downstream(message)  # not a cached route, or served from the cache
        elif message["type"] == "http.response.start":
            self.start = message
        elif message["type"] != "http.response.body" or self.start is None:
            await self.downstream(message)
        else:
            self.chunks.append(message.get("body", b""))
            self.size += len(self.chunks[-1])
            if self.size > plan.cache.max_body_bytes:
                await self._give_up(plan, self.start, message)
            elif not message.get("more_body", False):
                await plan.finish(self.start, b"".join(self.chunks), self.downstream)

    async def _give_up(self, plan: Plan, start: Message, message: Message) -> None:
        """Too large to store: send what is held back and pass the rest through."""
        self.passthrough = True
        await plan.abandon()
        MutableHeaders(scope=start)["x-cache"] = "MISS"
        await self.downstream(start)
        await self.downstream({**message, "body": b"".join(self.chunks)})


async def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


CacheDep = Annotated[Cache, Depends(get_cache)]
