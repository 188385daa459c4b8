"""Demo of the cache: an expensive computation served from Redis.

Item values stand in for your database. They live in one Redis hash, so every worker sees
every write: a value kept in one process's memory would be invisible to the others, which
would then compute and cache a stale answer for everyone. The point of the demo is what
the cache does around them, including when Redis is down: reads then fall back to the
last value this process saw (served uncached), and writes answer 503.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status
from pydantic import BaseModel, Field

from ..breaker import CircuitBreaker, RedisUnavailableError
from ..cache.http import CacheDep, cached
from ..contract import errors
from ..errors import ServiceError
from ..redis_client import RedisClient
from ..request_path import redis_failed_before
from ..scripts import hash_tagged
from ..settings import Settings, SettingsDep
from ..signals import UNHEARD, Signals

logger = logging.getLogger(__name__)

router = APIRouter(tags=["items"])
NAMESPACE = "items"

ItemId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Letters, digits, '_' and '-' (at most 64)",
        examples=["a"],
    ),
]


class Item(BaseModel):
    id: str
    value: str | None
    computed_at: datetime


class ItemUpdate(BaseModel):
    value: str = Field(max_length=1000, examples=["hello"])


class ItemValues:
    """The demo's data: a Redis hash, with no TTL (it is data, not a cache), behind a
    circuit breaker of its own. Reads fall back to the last value this process saw while
    Redis is unavailable; writes do not (503)."""

    SEEN_LIMIT = 10_000  # the fallback copy is forgotten wholesale past this many items

    def __init__(self, redis: RedisClient, settings: Settings, signals: Signals = UNHEARD) -> None:
        self._redis = redis
        self.key = hash_tagged(settings.redis_key_prefix, "demo-items", "values")
        self.breaker = CircuitBreaker.from_settings("demo items", settings, logger, signals)
        self._seen: dict[str, str] = {}

    async def get(self, item_id: str, *, skip_redis: bool = False) -> str | None:
        """The item's value; the last one seen when Redis is unavailable, or when the
        caller knows it failed already (`skip_redis`)."""
        if skip_redis:
            return self._seen.get(item_id)
        try:
            value = await self.breaker.call(lambda: self._redis.hget(self.key, item_id))
        except RedisUnavailableError:
            return self._seen.get(item_id)
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        self._remember(item_id, text)
        return text

    async def set(self, item_id: str, value: str) -> None:
        try:
            await self.breaker.call(lambda: self._redis.hset(self.key, item_id, value))
        except RedisUnavailableError as error:
            raise ServiceError(
                503,
                "redis_unavailable",
                "The item cannot be stored right now; try again shortly.",
                headers={"Retry-After": "1"},
            ) from error
        self._remember(item_id, value)

    def _remember(self, item_id: str, value: str) -> None:
        if len(self._seen) >= self.SEEN_LIMIT:
            self._seen.clear()
        self._seen[item_id] = value


async def _item_values(request: Request) -> ItemValues:
    values: ItemValues = request.app.state.item_values
    return values


ItemStore = Annotated[ItemValues, Depends(_item_values)]


@router.get("/items/{item_id}")
@router.head("/items/{item_id}", include_in_schema=False)
@cached(namespace=NAMESPACE)
async def get_item(
    item_id: ItemId, store: ItemStore, settings: SettingsDep, request: Request
) -> Item:
    """Takes DEMO_COMPUTE_DELAY_MS to compute; cached for CACHE_TTL_SECONDS."""
    await asyncio.sleep(settings.demo_compute_delay_ms / 1000)
    value = await store.get(item_id, skip_redis=redis_failed_before(request))
    return Item(id=item_id, value=value, computed_at=datetime.now(UTC))


@router.put("/items/{item_id}", responses=errors(e503="The item cannot be stored now (Redis)."))
async def put_item(
    item_id: ItemId, update: ItemUpdate, request: Request, store: ItemStore, cache: CacheDep
) -> Item:
    """Store a new value, then drop the item's cached responses: the next GET is a MISS.

    The order matters: invalidating after the write means no computation that read the
    old value can store it afterwards. PUT is idempotent, so a client may retry a 503.
    """
    await store.set(item_id, update.value)
    await cache.invalidate(NAMESPACE, request.url_for("get_item", item_id=item_id).path)
    return Item(id=item_id, value=update.value, computed_at=datetime.now(UTC))


@router.delete(
    "/cache/items",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(e503="The cache cannot be cleared now (Redis)."),
)
async def clear_items_cache(cache: CacheDep) -> None:
    """Invalidate every cached item response at once (O(1), no KEYS or SCAN)."""
    await cache.invalidate_namespace(NAMESPACE)
