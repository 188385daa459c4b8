"""HTTP response caching on top of the store: the `cached` route decorator and the middleware
that stores what the route computed.

* The lookup is one EVALSHA (it also answers If-None-Match), made before routing in the
  same round trip as the other features' work (request_path.py). A hit, or a 304, is
  answered right there from the stored bytes: no routing, no dependencies, no validation,
  no serialization. A route whose dependencies identify the caller (a session) is looked
  up the same way, but answered by its endpoint wrapper, after its dependencies ran.
  A miss costs one more round trip, the store, plus the endpoint's own work.
* Never cached: non-2xx responses, responses that set cookies or say no-store/private,
  requests with `Cache-Control: no-store`; `no-cache` recomputes and refreshes the entry.
  A request with `Authorization` bypasses the cache unless the route varies on it.
* A route's own `Vary` header is kept, on hits and 304s too, merged with the headers the
  route declared in `vary=`.
* Fails open: when Redis is down or slow the endpoint is computed and served uncached.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import secrets
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, Request, Response
from fastapi.routing import RouteContext
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders, State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..breaker import RedisUnavailableError
from ..contract import Document, add_headers
from ..features import NOTHING, Call, Outcome, RouteStep, route_identifies_caller
from ..scripts import digest
from ..settings import Settings
from .store import LOOKUP, Cache, CacheKeys, Found, check_namespace, entity_tag

logger = logging.getLogger(__name__)

PLAN_KEY = "cache_plan"
# Where `cached` leaves a route's policy: on the endpoint it returns.
POLICY_ATTRIBUTE = "__cache_policy__"
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


# The variant of a request without a query string, to a route that varies on nothing.
PLAIN_VARIANT = request_variant("", (), Headers())
# The request headers the cache reads itself.
CACHE_REQUEST_HEADERS = frozenset({b"cache-control", b"pragma", b"authorization", b"if-none-match"})


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


class StoredResponse(Response):
    """A response replayed from the cache, its headers ready-made: no rendering at all."""

    def __init__(self, status_code: int, body: bytes, raw_headers: list[tuple[bytes, bytes]]):
        self.status_code = status_code
        self.body = body
        self.raw_headers = raw_headers
        self.background = None


@dataclass
class Plan:
    """One request's dealings with the cache: what it looked up, and whether the response
    on its way out should be stored (when this caller holds the lock)."""

    cache: Cache
    policy: CachePolicy
    # May a hit be answered before routing? Not for a route that identifies its caller:
    # its dependencies must run (features.identifies_caller).
    before_routing: bool = True
    keys: CacheKeys | None = None
    variant: str = ""
    token: str = ""
    found: Found | None = None
    etags: tuple[str, ...] = ()
    take_lock: bool = False
    refresh: bool = False
    head: bool = False
    finished: bool = field(default=False)

    @property
    def owns_lock(self) -> bool:
        return self.found is not None and self.found.owns_lock and not self.finished

    async def abandon(self) -> None:
        if self.owns_lock and self.keys is not None:
            await self.cache.release(self.keys.lock, self.token)
        self.finished = True

    def prepare(self, request: Request) -> bool:
        """Work out the variant and its keys; False when the request bypasses the cache."""
        policy = self.policy
        scope = request.scope
        seen: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:  # one pass; the first line of each name counts
            if name in CACHE_REQUEST_HEADERS and name not in seen:
                seen[name] = value
        directives = cache_directives(
            seen.get(b"cache-control", b"").decode("latin-1"),
            seen.get(b"pragma", b"").decode("latin-1"),
        )
        if "no-store" in directives or (
            b"authorization" in seen and "authorization" not in policy.vary
        ):
            return False
        query = scope["query_string"].decode("latin-1")
        if query or policy.vary:
            self.variant = request_variant(query, policy.vary, request.headers)
        else:
            self.variant = PLAIN_VARIANT
        self.keys = self.cache.resource_keys(policy.namespace, scope["path"], self.variant)
        self.token = secrets.token_hex(16)
        self.etags = parse_if_none_match(seen.get(b"if-none-match", b"").decode("latin-1"))
        self.head = scope["method"] == "HEAD"
        self.take_lock = not self.head
        self.refresh = "no-cache" in directives
        return True

    def lookup_call(self) -> Call:
        """The lookup, for the request path to send with the other features' calls."""
        assert self.keys is not None  # noqa: S101 - prepare() came first
        return Call(
            script=LOOKUP,
            keys=self.cache.lookup_keys(self.keys),
            args=self.cache.lookup_args(
                self.variant,
                self.token,
                take_lock=self.take_lock,
                refresh=self.refresh,
                etags=self.etags,
            ),
            breaker=self.cache.breaker,
            settle=self.settle,
            release=self.abandon,
        )

    def settle(self, reply: Any) -> Outcome:
        """Keep what the lookup found; answer a hit at once if this route allows it."""
        if isinstance(reply, Exception):
            if not isinstance(reply, RedisUnavailableError):  # a bug, or a key of the wrong type
                logger.error("cache lookup script failed: %s", reply)
            self.cache.counted(self.policy.namespace, None)
            return NOTHING  # computed and served uncached
        found = self.found = Found.parse(reply)
        self.cache.counted(self.policy.namespace, found)
        if found.usable and self.before_routing:
            self.finished = True
            return Outcome(respond=self.answer(found))
        return NOTHING

    async def cached_response(self) -> Response | None:
        """The cached response for this request, when the endpoint wrapper is to answer it
        (a route that identifies its caller, or a lookup that had to wait for another
        caller's result); None to compute it (then the plan says what the middleware should
        do with the computed response)."""
        found = self.found
        if self.keys is None or found is None:
            return None  # bypassed, or Redis could not be asked
        if found.outcome == "miss-wait":
            try:
                found = self.found = await self.cache.obtain(
                    self.keys,
                    self.variant,
                    self.token,
                    take_lock=self.take_lock,
                    refresh=self.refresh,
                    etags=self.etags,
                )
            except RedisUnavailableError:
                self.found = None
                return None
        if not found.usable:
            return None
        self.finished = True
        return self.answer(found)

    def answer(self, found: Found) -> StoredResponse:
        """The stored response (or a 304), with the cache's headers and the merged Vary."""
        raw: list[tuple[bytes, bytes]] = []
        body = b""
        if found.outcome.endswith("-match"):
            status = 304
            stored = [pair for pair in _stored_headers(found.headers) if pair[0] == "vary"]
        else:
            status = found.status
            stored = _stored_headers(found.headers)
            body = found.body or b""
            raw.append((b"content-length", str(len(body)).encode()))
            if self.head:
                body = b""
        raw += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in stored]
        label = "STALE" if found.outcome.startswith("stale") else "HIT"
        headers = cache_headers(self.policy, found.etag, found.fresh_ms, label, found.age_ms)
        raw += [(name.encode(), value.encode("latin-1")) for name, value in headers.items()]
        if self.policy.vary or any(name == "vary" for name, _ in stored):
            merge_vary(MutableHeaders(raw=raw), self.policy.vary)
        return StoredResponse(status, body, raw)

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
            state: dict[str, Any] = request.scope.setdefault("state", {})
            plan: Plan | None = state.get(PLAN_KEY)
            # Every cached route is in the request path's table, which made the plan; without
            # one (a route that is not, such as a method other than GET and HEAD), compute.
            response = await plan.cached_response() if plan is not None else None
            if response is not None:
                return response
            try:
                if is_async:
                    return await endpoint(*args, **kwargs)
                return await run_in_threadpool(endpoint, *args, **kwargs)
            except BaseException:
                if plan is not None:
                    await plan.abandon()
                raise

        setattr(wrapper, POLICY_ATTRIBUTE, policy)
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
        plan: Plan | None = scope.get("state", {}).get(PLAN_KEY)
        if plan is None or plan.finished:  # not a cached route, or answered already
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


def _stored_headers(stored: bytes | None) -> list[tuple[str, str]]:
    return [(name, value) for name, value in json.loads(stored)] if stored else []


def cache_step(state: State, route: RouteContext) -> RouteStep | None:
    """The cache's part of the request path: look up before routing, and answer a hit
    (or a 304) from the stored bytes, without routing, validation or serialization."""
    policy = _policy_of(route)
    if policy is None:
        return None
    cache: Cache = state.cache
    before_routing = not route_identifies_caller(route)

    def step(request: Request) -> Call | None:
        if request.scope["method"] not in ("GET", "HEAD"):
            return None
        plan = Plan(cache=cache, policy=policy, before_routing=before_routing)
        request.scope.setdefault("state", {})[PLAN_KEY] = plan
        if not plan.prepare(request):
            cache.signals.count("cache_lookup", policy.namespace, "bypass")
            return None
        return plan.lookup_call()

    return step


def cache_document(settings: Settings) -> Document:
    """The cache's part of the contract: on every cached operation, 304 for a matching
    If-None-Match, and the cache's headers on its answers."""

    def document(
        route: RouteContext, method: str, operation: dict[str, Any], components: dict[str, Any]
    ) -> None:
        if method != "GET" or _policy_of(route) is None:
            return
        add_headers(operation, CACHE_RESPONSE_HEADERS)
        operation.setdefault("responses", {}).setdefault(
            "304",
            {"description": "Not modified: If-None-Match matched the ETag. No body."},
        )

    return document


CACHE_RESPONSE_HEADERS = {
    "ETag": "a strong tag of the body, the same in every process",
    "Cache-Control": "private or public, max-age: the seconds the answer stays fresh",
    "X-Cache": "HIT, STALE (served while one caller refreshes) or MISS",
    "Age": "seconds since the answer was stored (on HIT and STALE)",
}


def _policy_of(route: RouteContext) -> CachePolicy | None:
    endpoint: Any = route.endpoint
    while endpoint is not None and not hasattr(endpoint, POLICY_ATTRIBUTE):
        endpoint = getattr(endpoint, "__wrapped__", None)
    return getattr(endpoint, POLICY_ATTRIBUTE) if endpoint is not None else None


async def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


CacheDep = Annotated[Cache, Depends(get_cache)]
