"""Demo of the cache: an expensive computation served from Redis.

Item values live in process memory here, standing in for your database: the point is
what the cache does around it, including when Redis is down.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status
from pydantic import BaseModel, Field

from ..cache.http import CacheDep, cached
from ..settings import SettingsDep

router = APIRouter(prefix="/items", tags=["items"])
NAMESPACE = "items"

ItemId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Letters, digits, '_' and '-' (at most 64)",
    ),
]


class Item(BaseModel):
    id: str
    value: str | None
    computed_at: datetime


class ItemUpdate(BaseModel):
    value: str = Field(max_length=1000)


async def _item_store(request: Request) -> dict[str, str]:
    state = request.app.state
    if not hasattr(state, "item_store"):
        state.item_store = {}
    store: dict[str, str] = state.item_store
    return store


ItemStore = Annotated[dict[str, str], Depends(_item_store)]


@router.get("/{item_id}")
@router.head("/{item_id}", include_in_schema=False)
@cached(namespace=NAMESPACE)
async def get_item(item_id: ItemId, store: ItemStore, settings: SettingsDep) -> Item:
    """Takes DEMO_COMPUTE_DELAY_MS to compute; cached for CACHE_TTL_SECONDS."""
    await asyncio.sleep(settings.demo_compute_delay_ms / 1000)
    return Item(id=item_id, value=store.get(item_id), computed_at=datetime.now(UTC))


@router.put("/{item_id}")
async def put_item(
    item_id: ItemId, update: ItemUpdate, request: Request, store: ItemStore, cache: CacheDep
) -> Item:
    """Store a new value, then drop the item's cached responses: the next GET is a MISS.

    The order matters: invalidating after the write means no computation that read the
    old value can store it afterwards. PUT is idempotent, so a client may retry a 503.
    """
    store[item_id] = update.value
    await cache.invalidate(NAMESPACE, request.url_for("get_item", item_id=item_id).path)
    return Item(id=item_id, value=update.value, computed_at=datetime.now(UTC))


@router.delete("/cache", status_code=status.HTTP_204_NO_CONTENT)
async def clear_items_cache(cache: CacheDep) -> None:
    """Invalidate every cached item response at once (O(1), no KEYS or SCAN)."""
    await cache.invalidate_namespace(NAMESPACE)
