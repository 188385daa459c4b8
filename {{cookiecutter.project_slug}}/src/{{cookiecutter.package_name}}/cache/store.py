"""Data caching on Redis: the key layout, the Lua calls, `get_or_set` and invalidation.

* A lookup is one EVALSHA; it also takes the stampede lock for the first caller of a cold
  key and answers whether an ETag still matches. One computation per cold key across every
  process: the others wait for its result and compute themselves only if the lock lapses.
  Past its TTL an entry is served stale while one caller refreshes it. TTLs carry jitter,
  so entries written together expire apart.
* The ETag is a hash of the stored bytes, so every process and every restart agrees.
* Invalidation is O(1): one resource (all its variants) or a whole namespace (a new
  namespace version). No KEYS, no SCAN. Every key of a namespace shares one hash tag, so
  the scripts run unchanged on Redis Cluster (a namespace lives on one shard).
* Fails open: when Redis is down or slow the value is computed and returned uncached, and
  a circuit breaker keeps every caller from paying the Redis timeout.
* Values are JSON, never pickle.
* Every lookup is signalled with its namespace and result (`cache_lookup`: hit, stale,
  miss, bypass or error), and every caller that waits for another's computation
  (`cache_stampede_wait`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..breaker import CircuitBreaker, RedisUnavailableError
from ..redis_client import RedisClient
from ..scripts import LuaScript, digest, hash_tagged
from ..settings import Settings
from ..signals import UNHEARD, Signals

logger = logging.getLogger(__name__)

SCHEMA = "v1"  # part of every key: bump it when the stored layout changes
MAX_VARIANTS = 64
NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")

LOOKUP = LuaScript(__package__, "lookup.lua")
STORE = LuaScript(__package__, "store.lua")
RELEASE = LuaScript(__package__, "release.lua")
INVALIDATE = LuaScript(__package__, "invalidate.lua")

Model = TypeVar("Model", bound=BaseModel)

# A lookup's outcome (lookup.lua) as the figures count it; "refresh" is a caller's no-cache.
LOOKUP_RESULTS = {
    "hit": "hit",
    "hit-match": "hit",
    "stale": "stale",
    "stale-match": "stale",
    "refresh": "bypass",
}


class CacheSerializationError(TypeError):
    """The value cannot be stored as JSON. Raised at the call site, before Redis is touched."""


def check_namespace(namespace: str) -> str:
    if not NAMESPACE_RE.match(namespace):
        raise ValueError(f"cache namespace {namespace!r}: use 1-64 of a-z 0-9 _ . -")
    return namespace


@dataclass(frozen=True)
class CacheKeys:
    """The keys of one cached resource: its namespace's version, the entry (a hash of every
    variant), one variant's stampede lock and the invalidation marker."""

    version: str
    entry: str
    lock: str
    marker: str
    namespace: str


@dataclass
class Found:
    """What a lookup found (the reply of lookup.lua)."""

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
    def parse(cls, reply: Sequence[Any]) -> Found:
        def text(value: Any) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        found = cls(outcome=text(reply[0]), version=text(reply[1]), now_ms=int(reply[2]))
        if len(reply) > 3:
            found.etag = text(reply[3])
            found.fresh_ms = int(reply[4])
            found.age_ms = int(reply[5])
        if len(reply) > 6:  # the stored response: its body (none on a match), headers, status
            found.body = bytes(reply[6]) if reply[6] is not None else None
            found.headers = bytes(reply[7]) if reply[7] is not None else None
        if len(reply) > 8:
            found.status = int(reply[8]) if reply[8] is not None else 200
        return found

    @property
    def usable(self) -> bool:
        return self.outcome in {"hit", "stale", "hit-match", "stale-match"}

    @property
    def owns_lock(self) -> bool:
        return self.outcome in {"miss-lock", "refresh"}


def entity_tag(body: bytes) -> str:
    """A strong ETag from the bytes themselves: the same in every process and after restarts."""
    return '"' + digest(body) + '"'


def encode_json(value: Any) -> bytes:
    try:
        return json.dumps(
            to_jsonable_python(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (PydanticSerializationError, TypeError, ValueError) as error:
        raise CacheSerializationError(
            f"cannot cache a {type(value).__name__} as JSON: {error}"
        ) from error


class Cache:
    def __init__(self, redis: RedisClient, settings: Settings, signals: Signals = UNHEARD) -> None:
        self._redis = redis
        self.signals = signals
        self._prefix = settings.redis_key_prefix
        self._default_ttl_seconds = settings.cache_ttl_seconds
        self._stale_ms = int(settings.cache_stale_seconds * 1000)
        self._lock_ttl_ms = max(int(settings.cache_lock_ttl_seconds * 1000), 1)
        self.max_body_bytes = settings.cache_max_body_bytes
        self.breaker = CircuitBreaker.from_settings("cache", settings, logger, signals)
        self._tags: dict[str, str] = {}

    def counted(self, namespace: str, found: Found | None) -> None:
        """Signal a lookup's result; None: Redis could not be asked, or the script failed."""
        result = "error" if found is None else LOOKUP_RESULTS.get(found.outcome, "miss")
        self.signals.count("cache_lookup", namespace, result)

    # -- keys and Redis calls ---------------------------------------------------------

    def resource_keys(self, namespace: str, resource: str, variant: str) -> CacheKeys:
        tag = self._tags.get(namespace)
        if tag is None:  # namespaces come from the code: a handful, checked once each
            tag = self._tags[namespace] = f"c:{SCHEMA}:{check_namespace(namespace)}"
        resource_digest = digest(resource)
        return CacheKeys(
            version=hash_tagged(self._prefix, tag, "ver"),
            entry=hash_tagged(self._prefix, tag, "e", resource_digest),
            lock=hash_tagged(self._prefix, tag, "l", resource_digest, variant),
            marker=hash_tagged(self._prefix, tag, "i", resource_digest),
            namespace=namespace,
        )

    async def _run(self, script: LuaScript, keys: list[str], args: list[Any]) -> Any:
        return await self.breaker.call(lambda: script(self._redis, keys, args))

    def ttl_ms(self, ttl_seconds: float | None) -> int:
        base = (ttl_seconds or self._default_ttl_seconds) * 1000
        # Up to 10 % shorter, never longer than asked: entries written together expire apart.
        return max(int(base * (1 - 0.1 * random.random())), 1)  # noqa: S311 - not security

    async def obtain(
        self,
        keys: CacheKeys,
        variant: str,
        token: str,
        *,
        take_lock: bool,
        refresh: bool,
        etags: Sequence[str] = (),
    ) -> Found:
        """Look up; while another caller computes this variant, wait for its result.

        Each wait re-tries the lock, so if its holder died a waiter takes over once the
        lock lapses. Past the lock TTL the caller gives up and computes uncached.
        Raises RedisUnavailableError when Redis cannot be asked.
        """
        deadline = time.monotonic() + self._lock_ttl_ms / 1000
        delay = 0.01
        while True:
            reply = await self._run(
                LOOKUP,
                self.lookup_keys(keys),
                self.lookup_args(variant, token, take_lock=take_lock, refresh=refresh, etags=etags),
            )
            found = Found.parse(reply)
            if found.outcome != "miss-wait" or refresh or time.monotonic() >= deadline:
                return found
            if delay == 0.01:  # the first wait of this caller
                self.signals.count("cache_stampede_wait", keys.namespace)
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter only
            delay = min(delay * 2, 0.1)

    @staticmethod
    def lookup_keys(keys: CacheKeys) -> list[str]:
        return [keys.version, keys.entry, keys.lock]

    def lookup_args(
        self, variant: str, token: str, *, take_lock: bool, refresh: bool, etags: Sequence[str]
    ) -> list[Any]:
        """The arguments of lookup.lua (see the script for their meaning)."""
        return [
            variant,
            token,
            self._lock_ttl_ms,
            int(take_lock),
            int(refresh),
            token[:16],  # a fresh namespace version, if the namespace has none: random enough
            *etags,
        ]

    async def store(
        self,
        keys: CacheKeys,
        variant: str,
        token: str,
        found: Found,
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
                [keys.version, keys.entry, keys.lock, keys.marker],
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
        keys = self.resource_keys(namespace, key, "-")
        token = secrets.token_hex(16)
        try:
            found = await self.obtain(keys, "-", token, take_lock=True, refresh=False)
        except RedisUnavailableError:
            self.counted(namespace, None)
            return self._decode(encode_json(await producer()), model)
        self.counted(namespace, found)
        if found.usable and found.body is not None:
            return self._decode(found.body, model)
        try:
            body = encode_json(await producer())
        except BaseException:
            if found.owns_lock:
                await self.release(keys.lock, token)
            raise
        if found.owns_lock:
            ttl_ms = self.ttl_ms(ttl_seconds)
            await self.store(keys, "-", token, found, body, entity_tag(body), b"[]", ttl_ms)
        return self._decode(body, model)

    @staticmethod
    def _decode(body: bytes, model: type[Model] | None) -> Any:
        return model.model_validate_json(body) if model is not None else json.loads(body)

    # -- invalidation -------------------------------------------------------------------

    async def invalidate(self, namespace: str, key: str) -> None:
        """Drop one entry: a data key, or a response path with all its variants.

        Redis errors propagate: a caller that changed data must know the cache may still
        serve the old version (until the entry's TTL)."""
        keys = self.resource_keys(namespace, key, "-")
        await INVALIDATE(self._redis, [keys.entry, keys.marker], [self._lock_ttl_ms + 1000])

    async def invalidate_namespace(self, namespace: str) -> None:
        """Drop every entry of a namespace in O(1): entries keep the old version and miss."""
        keys = self.resource_keys(namespace, "", "-")
        await self._redis.set(keys.version, secrets.token_hex(8))
