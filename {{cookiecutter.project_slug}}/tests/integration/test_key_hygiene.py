"""Every key the service writes expires, except the few long-lived ones the README lists."""

from __future__ import annotations
{% if cookiecutter.use_sessions %}
import asyncio
{% endif %}
import pytest
from redis.asyncio import Redis

from tests.redis_servers import RedisServer
from tests.service import Service, SettingsFactory, serve

pytestmark = pytest.mark.anyio

# The README's key layout: the keys that are data, not state that runs out.
{%- if cookiecutter.use_cache or cookiecutter.use_sessions or cookiecutter.use_realtime %}
LONG_LIVED_SUFFIXES = (
{%- if cookiecutter.use_cache %}
    ":ver",  # a cache namespace's version: one small string per namespace
    "{demo-items}:values",  # the cache demo's item values: its stand-in database
{%- endif %}
{%- if cookiecutter.use_sessions %}
    ":account",  # a demo account
{%- endif %}
{%- if cookiecutter.use_realtime %}
    ":all",  # an all-time leaderboard
{%- endif %}
)
{%- else %}
LONG_LIVED_SUFFIXES: tuple[str, ...] = ()  # every bucket of the limiter expires
{%- endif %}


async def drive_every_route(service: Service) -> None:
    client = service.client
    assert (await client.get("/")).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200
{%- if cookiecutter.use_cache %}
    for path in ("/items/a", "/items/a", "/items/b?page=2"):
        assert (await client.get(path)).status_code == 200
    assert (await client.head("/items/a")).status_code == 200
    assert (await client.put("/items/a", json={"value": "v"})).status_code == 200
    assert (await client.delete("/cache/items")).status_code == 204
    assert (await client.get("/items/a")).status_code == 200
{%- endif %}
{%- if cookiecutter.use_sessions %}
    anonymous = await client.patch("/auth/preferences", json={"theme": "dark"})
    assert anonymous.status_code == 200
    for username in ("ada", "late"):
        body = {"username": username, "password": "correct horse battery"}
        assert (await client.post("/auth/register", json=body)).status_code == 201
    body = {"username": "ada", "password": "correct horse battery"}
    csrf = {"x-csrf-token": (await client.post("/auth/login", json=body)).json()["csrf_token"]}
    assert (await client.get("/auth/me")).status_code == 200
    assert (await client.get("/auth/sessions")).status_code == 200
    assert (await client.get("/auth/preferences")).status_code == 200
    assert (await client.patch("/auth/preferences", json={"a": 1}, headers=csrf)).status_code == 200
    assert (await client.post("/auth/logout", headers=csrf)).status_code == 204
    csrf = {"x-csrf-token": (await client.post("/auth/login", json=body)).json()["csrf_token"]}
    assert (await client.post("/auth/logout-all", headers=csrf)).status_code == 204
    late = {"username": "late", "password": "correct horse battery"}
    logged_in = await client.post("/auth/login", json=late)
    assert logged_in.status_code == 200
{%- if cookiecutter.use_realtime %}
    csrf = {"x-csrf-token": logged_in.json()["csrf_token"]}
    published = await client.post(
        "/realtime/topics/news/messages", json={"data": {"n": 1}}, headers=csrf
    )
    assert published.status_code == 202
    notified = await client.post("/realtime/notifications", json={"data": "hi"}, headers=csrf)
    assert notified.status_code == 202
    score = {"member": "late", "increment": 3}
    scored = await client.post("/leaderboards/arcade/scores", json=score, headers=csrf)
    assert scored.status_code == 200
{%- endif %}
    await asyncio.sleep(1.2)  # past SESSION_IDLE_TTL_SECONDS: the session expires
    assert (await client.get("/auth/me")).status_code == 401
{%- elif cookiecutter.use_realtime %}
    published = await client.post("/realtime/topics/news/messages", json={"data": {"n": 1}})
    assert published.status_code == 202
    score = {"member": "ada", "increment": 3}
    assert (await client.post("/leaderboards/arcade/scores", json=score)).status_code == 200
{%- endif %}


async def test_after_every_route_every_key_expires_but_the_documented_long_lived_ones(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = make_settings(
        redis_url=own_redis_server.url,
{%- if cookiecutter.use_cache %}
        demo_compute_delay_ms=0,
{%- endif %}
{%- if cookiecutter.use_sessions %}
        password_hash_cost=10,
        session_idle_ttl_seconds=1,
        session_touch_interval_seconds=0,
{%- endif %}
    )
    async with serve(settings) as service:
        await drive_every_route(service)
    admin = Redis.from_url(own_redis_server.url, decode_responses=True)
    try:
        keys = [key async for key in admin.scan_iter(match=f"{settings.redis_key_prefix}:*")]
        lasting = [key for key in keys if await admin.pttl(key) == -1]
    finally:
        await admin.aclose()
    assert keys, "the routes wrote nothing"
    assert [key for key in lasting if not key.endswith(LONG_LIVED_SUFFIXES)] == []
