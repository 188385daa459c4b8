"""Response and data caching on Redis.

* A hit is one round trip: one EVALSHA that also answers If-None-Match. A miss is at most
  three: the lookup, the endpoint's own work, the store.
* One computation per cold key across every process: the first caller takes a short
  Redis lock (SET NX PX, released only by its owner); the others wait for its result and
  compute themselves only if the lock lapses. Past its TTL an entry is served stale while
  one caller refreshes it. TTLs carry jitter so entries written together expire apart.
* The ETag is a hash of the stored bytes, so every process and every restart agrees.
* Invalidation is O(1): one resource (all its variants) or a whole namespace (a new
  namespace version). No KEYS, no SCAN. Every key of a namespace shares one hash tag, so
  the scripts run unchanged on Redis Cluster (a namespace lives on one shard).
* Never cached: non-2xx responses, responses that set cookies or say no-store/private,
  requests with `Cache-Control: no-store`; `no-cache` recomputes and refreshes the entry.
  A request with `Authorization` bypasses the cache unless the route varies on it.
* Fails open: when Redis is down or slow the endpoint is computed and served uncached, and
  a circuit breaker keeps every request from paying the Redis timeout.
* Values are JSON, never pickle.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import json
import logging
import random
import re
import secrets
import time
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, cast, overload
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, Request, Response
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .breaker import CircuitBreaker, RedisUnavailableError
from .redis_client import LuaScript, RedisClient, hash_tagged
from .settings import Settings

logger = logging.getLogger(__name__)

SCHEMA = "v1"  # part of every key: bump it when the stored layout changes
PLAN_KEY = "cache_plan"
MAX_VARIANTS = 64
NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
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
        "vary",
        "x-cache",
    }
)

LOOKUP = LuaScript("cache_lookup.lua")
STORE = LuaScript("cache_store.lua")
RELEASE = LuaScript("cache_release.lua")
INVALIDATE = LuaScript("cache_invalidate.lua")

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
Model = TypeVar("Model", bound=BaseModel)


class CacheSerializationError(TypeError):
    """The value cannot be stored as JSON. Raised at the call site, before Redis is touched."""


@dataclass(frozen=True)
class CachePolicy:
    namespace: str
    ttl_seconds: float | None = None
    vary: tuple[str, ...] = ()
    public: bool = False


@dataclass(frozen=True)
class _Keys:
    version: str
    entry: str
    lock: str
    marker: str


@dataclass
class _Found:
    outcome: str
    version: str
    now_ms: int
    etag: str = ""
    fresh_ms: int = 0
    age_ms: int = 0
    body: bytes | None = None
    headers: bytes | None = None
    status: int = 200

    @classmethod
    def parse(cls, reply: Sequence[Any]) -> _Found:
        def text(value: Any) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        found = cls(outcome=text(reply[0]), version=text(reply[1]), now_ms=int(reply[2]))
        if len(reply) > 3:
            found.etag = text(reply[3])
            found.fresh_ms = int(reply[4])
            found.age_ms = int(reply[5])
        if len(reply) > 6:
            found.body = bytes(reply[6])
            found.headers = bytes(reply[7]) if reply[7] is not None else None
            found.status = int(reply[8]) if reply[8] is not None else 200
        return found

    @property
    def usable(self) -> bool:
        return self.outcome in {"hit", "stale", "hit-match", "stale-match"}

    @property
    def owns_lock(self) -> bool:
        return self.outcome in {"miss-lock", "refresh"}


@dataclass
class _Plan:
    """What the response on its way out should do: store it (when this caller holds the
    lock) and in any case carry the cache headers."""

    cache: Cache
    policy: CachePolicy
    keys: _Keys | None = None
    variant: str = ""
    token: str = ""
    found: _Found | None = None
    etags: tuple[str, ...] = ()
    finished: bool = field(default=False)

    @property
    def owns_lock(self) -> bool:
        return self.found is not None and self.found.owns_lock and not self.finished

    async def abandon(self) -> None:
        if self.owns_lock and self.keys is not None:
            await self.cache.release(self.keys.lock, self.token)
        self.finished = True


def entity_tag(body: bytes) -> str:
    """A strong ETag from the bytes themselves: the same in every process and after restarts."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


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


def encode_json(value: Any) -> bytes:
    try:
        return json.dumps(
            to_jsonable_python(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (PydanticSerializationError, TypeError, ValueError) as error:
        raise CacheSerializationError(
            f"cannot cache a {type(value).__name__} as JSON: {error}"
        ) from error


def _digest(text: str, length: int = 32) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _variant(query_string: str, vary: Iterable[str], headers: Headers) -> str:
    """One response per canonical (sorted) query string and per value of each Vary header."""
    query = urlencode(sorted(parse_qsl(query_string, keep_blank_values=True)))
    varied = "\n".join(f"{name}:{headers.get(name, '')}" for name in vary)
    return _digest(f"{query}\n{varied}", 16)


class Cache:
    def __init__(self, redis: RedisClient, settings: Settings) -> None:
        self._redis = redis
        self._prefix = settings.redis_key_prefix
        self._default_ttl_seconds = settings.cache_ttl_seconds
        self._stale_ms = int(settings.cache_stale_seconds * 1000)
        self._lock_ttl_ms = max(int(settings.cache_lock_ttl_seconds * 1000), 1)
        self.max_body_bytes = settings.cache_max_body_bytes
        self.breaker = CircuitBreaker.from_settings("cache", settings, logger)

    # -- keys and Redis calls ---------------------------------------------------------

    def _keys(self, namespace: str, resource: str, variant: str) -> _Keys:
        if not NAMESPACE_RE.match(namespace):
            raise ValueError(f"cache namespace {namespace!r}: use 1-64 of a-z 0-9 _ . -")
        tag = f"c:{SCHEMA}:{namespace}"
        resource_digest = _digest(resource)
        return _Keys(
            version=hash_tagged(self._prefix, tag, "ver"),
            entry=hash_tagged(self._prefix, tag, "e", resource_digest),
            lock=hash_tagged(self._prefix, tag, "l", resource_digest, variant),
            marker=hash_tagged(self._prefix, tag, "i", resource_digest),
        )

    async def _run(self, script: LuaScript, keys: list[str], args: list[Any]) -> Any:
        return await self.breaker.call(lambda: script(self._redis, keys, args))

    def _ttl_ms(self, ttl_seconds: float | None) -> int:
        base = (ttl_seconds or self._default_ttl_seconds) * 1000
        # Up to 10 % shorter, never longer than asked: entries written together expire apart.
        return max(int(base * (1 - 0.1 * random.random())), 1)  # noqa: S311 - not security

    async def _lookup(
        self,
        keys: _Keys,
        variant: str,
        token: str,
        *,
        take_lock: bool,
        refresh: bool,
        etags: Sequence[str],
    ) -> _Found:
        reply = await self._run(
            LOOKUP,
            [keys.version, keys.entry, keys.lock],
            [
                variant,
                token,
                self._lock_ttl_ms,
                int(take_lock),
                int(refresh),
                secrets.token_hex(8),
                *etags,
            ],
        )
        return _Found.parse(reply)

    async def _obtain(
        self,
        keys: _Keys,
        variant: str,
        token: str,
        *,
        take_lock: bool,
        refresh: bool,
        etags: Sequence[str],
    ) -> _Found:
        """Look up; while another caller computes this variant, wait for its result.

        Each wait re-tries the lock, so if its holder died a waiter takes over once the
        lock lapses. Past the lock TTL the caller gives up and computes uncached.
        """
        deadline = time.monotonic() + self._lock_ttl_ms / 1000
        delay = 0.01
        while True:
            found = await self._lookup(
                keys, variant, token, take_lock=take_lock, refresh=refresh, etags=etags
            )
            if found.outcome != "miss-wait" or refresh or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter only
            delay = min(delay * 2, 0.1)

    async def _store(
        self,
        plan_keys: _Keys,
        variant: str,
        token: str,
        found: _Found,
        body: bytes,
        etag: str,
        headers: bytes,
        ttl_ms: int,
        status: int = 200,
    ) -> None:
        """Store if this caller still holds the lock; a failure only costs the caching."""
        with contextlib.suppress(RedisUnavailableError):
            await self._run(
                STORE,
                [plan_keys.version, plan_keys.entry, plan_keys.lock, plan_keys.marker],
                [variant, token, found.version, found.now_ms, ttl_ms, self._stale_ms,
                 etag, body, headers, MAX_VARIANTS, status],
            )  # fmt: skip

    async def release(self, lock: str, token: str) -> None:
        with contextlib.suppress(RedisUnavailableError):  # the lock lapses by itself
            await self._run(RELEASE, [lock], [token])

    # -- data caching -------------------------------------------------------------------

    @overload
    async def get_or_set(
        self,
        key: str,
        producer: Callable[[], Awaitable[Any]],
        *,
        model: type[Model],
        namespace: str = ...,
        ttl_seconds: float | None = ...,
    ) -> Model: ...

    @overload
    async def get_or_set(
        self,
        key: str,
        producer: Callable[[], Awaitable[Any]],
        *,
        model: None = ...,
        namespace: str = ...,
        ttl_seconds: float | None = ...,
    ) -> Any: ...

    async def get_or_set(
        self,
        key: str,
        producer: Callable[[], Awaitable[Any]],
        *,
        model: type[Model] | None = None,
        namespace: str = "data",
        ttl_seconds: float | None = None,
    ) -> Any:
        """The cached value of `key`, computed by `producer` (once across processes) on a miss.

        Returns the value as JSON types, or as `model` when given: the same on a hit and a
        miss. A value that is not JSON-serializable raises CacheSerializationError here.
        """
        keys = self._keys(namespace, key, "-")
        token = secrets.token_hex(16)
        try:
            found = await self._obtain(keys, "-", token, take_lock=True, refresh=False, etags=())
        except RedisUnavailableError:
            return self._decode(encode_json(await producer()), model)
        if found.usable and found.body is not None:
            return self._decode(found.body, model)
        try:
            body = encode_json(await producer())
        except BaseException:
            if found.owns_lock:
                await self.release(keys.lock, token)
            raise
        if found.owns_lock:
            ttl_ms = self._ttl_ms(ttl_seconds)
            await self._store(keys, "-", token, found, body, entity_tag(body), b"[]", ttl_ms)
        return self._decode(body, model)

    @staticmethod
    def _decode(body: bytes, model: type[Model] | None) -> Any:
        return model.model_validate_json(body) if model is not None else json.loads(body)

    # -- invalidation -------------------------------------------------------------------

    async def invalidate(self, namespace: str, key: str) -> None:
        """Drop one entry: a data key, or a response path with all its variants.

        Redis errors propagate: a caller that changed data must know the cache may still
        serve the old version (until the entry's TTL)."""
        keys = self._keys(namespace, key, "-")
        await INVALIDATE(self._redis, [keys.entry, keys.marker], [self._lock_ttl_ms + 1000])

    async def invalidate_namespace(self, namespace: str) -> None:
        """Drop every entry of a namespace in O(1): entries keep the old version and miss."""
        keys = self._keys(namespace, "", "-")
        await self._redis.set(keys.version, secrets.token_hex(8))

    # -- response caching -----------------------------------------------------------------

    async def cached_response(self, request: Request, policy: CachePolicy) -> Response | None:
        """The cached response for this request, or None to compute it. In the latter case
        a plan is left on request.state for CacheMiddleware to finish on the way out."""
        plan = _Plan(cache=self, policy=policy)
        setattr(request.state, PLAN_KEY, plan)
        directives = cache_directives(
            request.headers.get("cache-control"), request.headers.get("pragma")
        )
        if "no-store" in directives or (
            "authorization" in request.headers and "authorization" not in policy.vary
        ):
            return None
        plan.variant = _variant(request.url.query, policy.vary, request.headers)
        plan.keys = self._keys(policy.namespace, request.url.path, plan.variant)
        plan.token = secrets.token_hex(16)
        plan.etags = parse_if_none_match(request.headers.get("if-none-match"))
        try:
            found = await self._obtain(
                plan.keys,
                plan.variant,
                plan.token,
                take_lock=request.method == "GET",
                refresh="no-cache" in directives,
                etags=plan.etags,
            )
        except RedisUnavailableError:
            return None
        if not found.usable:
            plan.found = found
            return None
        plan.finished = True
        label = "STALE" if found.outcome.startswith("stale") else "HIT"
        headers = self._cache_headers(policy, found.etag, found.fresh_ms, label, found.age_ms)
        if found.outcome.endswith("-match"):
            return Response(status_code=304, headers=headers)
        body = found.body or b""
        stored = json.loads(found.headers) if found.headers else []
        response = Response(
            content=b"" if request.method == "HEAD" else body, status_code=found.status
        )
        response.headers.update({"content-length": str(len(body))})
        for name, value in stored:
            response.headers.append(name, value)
        response.headers.update(headers)
        return response

    @staticmethod
    def _cache_headers(
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
        if policy.vary:
            headers["vary"] = ", ".join(name.title() for name in policy.vary)
        return headers

    async def finish(self, plan: _Plan, start: Message, body: bytes, send: Send) -> None:
        """Store the computed response if it may be cached, then send it (or a 304)."""
        headers = MutableHeaders(raw=list(start["headers"]))
        status = int(start["status"])
        cacheable = (
            plan.owns_lock
            and 200 <= status < 300
            and status != 206
            and "set-cookie" not in headers
            and not {"no-store", "private"} & cache_directives(headers.get("cache-control"))
        )
        if not cacheable or plan.keys is None or plan.found is None:
            await plan.abandon()
            headers["x-cache"] = "MISS"
            if plan.policy.vary:
                headers["vary"] = ", ".join(name.title() for name in plan.policy.vary)
            await send({**start, "headers": headers.raw})
            await send({"type": "http.response.body", "body": body})
            return
        ttl_ms = self._ttl_ms(plan.policy.ttl_seconds)
        stored = json.dumps(
            [[name, value] for name, value in headers.items() if name not in UNSTORED_HEADERS]
        ).encode()
        etag = entity_tag(body)
        await self._store(
            plan.keys, plan.variant, plan.token, plan.found, body, etag, stored, ttl_ms, status
        )
        plan.finished = True
        for name, value in self._cache_headers(plan.policy, etag, ttl_ms, "MISS").items():
            headers[name] = value
        if etag in plan.etags or "*" in plan.etags:
            for name in ("content-length", "content-type"):
                if name in headers:
                    del headers[name]
            await send({**start, "status": 304, "headers": headers.raw})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({**start, "headers": headers.raw})
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
    if not NAMESPACE_RE.match(namespace):
        raise ValueError(f"cache namespace {namespace!r}: use 1-64 of a-z 0-9 _ . -")
    policy = CachePolicy(namespace, ttl_seconds, tuple(name.lower() for name in vary), public)

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
            cache: Cache = request.app.state.cache
            response = await cache.cached_response(request, policy)
            if response is not None:
                return response
            try:
                if is_async:
                    return await endpoint(*args, **kwargs)
                return await run_in_threadpool(endpoint, *args, **kwargs)
            except BaseException:
                plan: _Plan | None = getattr(request.state, PLAN_KEY, None)
                if plan is not None:
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
        state: dict[str, Any] = scope.setdefault("state", {})
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0
        passthrough = False

        async def capture(message: Message) -> None:
            nonlocal start, size, passthrough
            plan: _Plan | None = state.get(PLAN_KEY)
            if plan is None or plan.finished or passthrough:
                await send(message)  # not a cached route, or already served from the cache
                return
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > plan.cache.max_body_bytes:
                passthrough = True
                await plan.abandon()
                headers = MutableHeaders(raw=list(start["headers"]))
                headers["x-cache"] = "MISS"
                await send({**start, "headers": headers.raw})
                await send({**message, "body": b"".join(chunks)})
                return
            if not message.get("more_body", False):
                await plan.cache.finish(plan, start, b"".join(chunks), send)

        try:
            await self.app(scope, receive, capture)
        finally:
            plan: _Plan | None = state.get(PLAN_KEY)
            if plan is not None and plan.owns_lock:
                await plan.abandon()


async def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


CacheDep = Annotated[Cache, Depends(get_cache)]
