"""The cache against a real Redis: Lua paths, stampede, round trips, outages."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from {{ cookiecutter.package_name }}.cache import Cache, cached
from {{ cookiecutter.package_name }}.features import identifies_caller
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.settings import Settings

from tests.outages import (
    BREAKER_OPENS_AFTER_TWO_TIMEOUTS,
    assert_the_breaker_spared_the_timeout,
    durations_while_frozen,
)
from tests.redis_monitor import record_commands
from tests.redis_servers import RedisServer
from tests.redis_target import RedisTarget
from tests.service import SettingsFactory, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(real_settings: SettingsFactory) -> Settings:
    return real_settings(demo_compute_delay_ms=20)


async def count_call(request: Request) -> int:
    """A dependency that counts its calls on the app."""
    request.app.state.dependency_calls = getattr(request.app.state, "dependency_calls", 0) + 1
    calls: int = request.app.state.dependency_calls
    return calls


@identifies_caller
async def count_caller(request: Request) -> int:
    return await count_call(request)


def app_with_test_routes(settings: Settings) -> FastAPI:
    app = create_app(settings)

    @app.get("/test/fixed")
    @cached(namespace="test")
    async def fixed() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/test/status/{code}")
    @cached(namespace="test")
    async def with_status(code: int) -> JSONResponse:
        return JSONResponse({"code": code, "at": time.time()}, status_code=code)

    @app.get("/test/cookie")
    @cached(namespace="test")
    async def with_cookie(response: Response) -> dict[str, float]:
        response.set_cookie("flavour", "oat")
        return {"at": time.time()}

    @app.get("/test/large")
    @cached(namespace="test")
    async def large() -> dict[str, str]:
        return {"blob": "x" * 4096, "at": str(time.time())}

    @app.get("/test/counted")
    @cached(namespace="test")
    async def counted(calls: Annotated[int, Depends(count_call)]) -> dict[str, int]:
        return {"calls": calls}

    @app.get("/test/personal")
    @cached(namespace="test")
    async def personal(calls: Annotated[int, Depends(count_caller)]) -> dict[str, int]:
        return {"calls": calls}

    @app.get("/test/varied")
    @cached(namespace="test", vary=["accept-language"])
    async def varied(response: Response) -> dict[str, str]:
        response.headers["vary"] = "Accept-Encoding"
        return {"hello": "world"}

    return app


async def get(client: httpx.AsyncClient, path: str = "/items/a", **headers: str) -> httpx.Response:
    return await client.get(path, headers=headers)


async def test_first_request_misses_then_hits(settings: Settings) -> None:
    async with serve(settings) as service:
        first = await get(service.client)
        second = await get(service.client)
    assert first.status_code == second.status_code == 200
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first.json() == second.json()
    assert first.headers["etag"] == second.headers["etag"]
    assert second.headers["cache-control"].startswith("private, max-age=")
    assert int(second.headers["age"]) >= 0


async def test_a_vary_header_the_route_sets_is_merged_with_the_declared_one_on_hits_too(
    settings: Settings,
) -> None:
    async with serve(settings, app_with_test_routes(settings)) as service:
        miss = await get(service.client, "/test/varied")
        hit = await get(service.client, "/test/varied")
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert miss.headers["vary"] == hit.headers["vary"] == "Accept-Encoding, Accept-Language"


async def test_an_entry_expires_after_its_ttl(real_settings: SettingsFactory) -> None:
    settings = real_settings(demo_compute_delay_ms=0, cache_ttl_seconds=0.3, cache_stale_seconds=0)
    async with serve(settings) as service:
        first = await get(service.client)
        await asyncio.sleep(0.45)
        later = await get(service.client)
    assert later.headers["x-cache"] == "MISS"
    assert later.json()["computed_at"] != first.json()["computed_at"]


async def test_a_stale_entry_is_served_while_one_caller_refreshes(
    real_settings: SettingsFactory,
) -> None:
    settings = real_settings(
        demo_compute_delay_ms=200, cache_ttl_seconds=0.3, cache_stale_seconds=30
    )
    async with serve(settings) as service:
        original = (await get(service.client)).json()["computed_at"]
        await asyncio.sleep(0.4)
        responses = await asyncio.gather(*(get(service.client) for _ in range(6)))
        afterwards = await get(service.client)
    labels = Counter(response.headers["x-cache"] for response in responses)
    assert labels == {"STALE": 5, "MISS": 1}
    stale = [r for r in responses if r.headers["x-cache"] == "STALE"]
    assert {r.json()["computed_at"] for r in stale} == {original}
    assert stale[0].headers["cache-control"].endswith("max-age=0")
    refreshed = next(r for r in responses if r.headers["x-cache"] == "MISS").json()["computed_at"]
    assert refreshed != original
    assert (afterwards.headers["x-cache"], afterwards.json()["computed_at"]) == ("HIT", refreshed)


async def test_a_matching_if_none_match_gets_304_without_a_body(settings: Settings) -> None:
    async with serve(settings) as service:
        etag = (await get(service.client)).headers["etag"]
        response = await get(service.client, **{"if-none-match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["x-cache"] == "HIT"


async def test_a_different_if_none_match_gets_the_full_response(settings: Settings) -> None:
    async with serve(settings) as service:
        await get(service.client)
        response = await get(service.client, **{"if-none-match": '"something-else"'})
    assert response.status_code == 200
    assert response.json()["id"] == "a"


@pytest.mark.parametrize("header", ['"x", {etag}', "W/{etag}", "*"])
async def test_if_none_match_lists_weak_tags_and_star_all_match(
    settings: Settings, header: str
) -> None:
    async with serve(settings) as service:
        etag = (await get(service.client)).headers["etag"]
        response = await get(service.client, **{"if-none-match": header.format(etag=etag)})
    assert response.status_code == 304


async def test_a_304_is_answered_on_the_computing_request_too(settings: Settings) -> None:
    async with serve(settings, app_with_test_routes(settings)) as service:
        etag = (await get(service.client, "/test/fixed")).headers["etag"]
        await service.app.state.cache.invalidate_namespace("test")
        response = await get(service.client, "/test/fixed", **{"if-none-match": etag})
    # Recomputed (a MISS), and the same bytes again: the client's copy is still good.
    assert (response.status_code, response.headers["x-cache"]) == (304, "MISS")
    assert response.content == b""


async def test_two_app_instances_agree_on_the_etag(
    real_settings: SettingsFactory,
) -> None:
    # Separate prefixes: each instance computes and stores the same bytes on its own.
    first_settings, second_settings = real_settings(), real_settings()
    async with (
        serve(first_settings, app_with_test_routes(first_settings)) as first,
        serve(second_settings, app_with_test_routes(second_settings)) as second,
    ):
        tags = [(await get(service.client, "/test/fixed")).headers for service in (first, second)]
    assert tags[0]["x-cache"] == tags[1]["x-cache"] == "MISS"
    assert tags[0]["etag"] == tags[1]["etag"]


async def test_an_instance_serves_another_instances_entry_with_its_etag(
    settings: Settings,
) -> None:
    async with serve(settings) as first, serve(settings) as second:
        computed = await get(first.client)
        served = await get(second.client)
    assert served.headers["x-cache"] == "HIT"
    assert served.headers["etag"] == computed.headers["etag"]


@pytest.mark.parametrize("code", [201, 404, 500, 503])
async def test_only_successful_responses_are_cached(settings: Settings, code: int) -> None:
    async with serve(settings, app_with_test_routes(settings)) as service:
        first = await get(service.client, f"/test/status/{code}")
        second = await get(service.client, f"/test/status/{code}")
    assert first.status_code == second.status_code == code
    if code == 201:
        assert second.headers["x-cache"] == "HIT"
    else:
        assert second.headers["x-cache"] == "MISS"
        assert first.json()["at"] != second.json()["at"]


async def test_responses_that_set_cookies_are_not_cached(settings: Settings) -> None:
    async with serve(settings, app_with_test_routes(settings)) as service:
        first = await get(service.client, "/test/cookie")
        second = await get(service.client, "/test/cookie")
    assert "set-cookie" in second.headers
    assert second.headers["x-cache"] == "MISS"
    assert first.json() != second.json()


async def test_bodies_over_the_limit_are_served_but_not_stored(
    real_settings: SettingsFactory,
) -> None:
    settings = real_settings(cache_max_body_bytes=1024)
    async with serve(settings, app_with_test_routes(settings)) as service:
        first = await get(service.client, "/test/large")
        second = await get(service.client, "/test/large")
    assert len(first.json()["blob"]) == 4096
    assert second.headers["x-cache"] == "MISS"


async def test_a_no_store_request_bypasses_the_cache(settings: Settings) -> None:
    async with serve(settings) as service:
        bypassed = await get(service.client, **{"cache-control": "no-store"})
        after = await get(service.client)
    assert bypassed.headers["x-cache"] == "MISS"
    assert after.headers["x-cache"] == "MISS"  # the bypassed response was not stored


async def test_a_no_cache_request_recomputes_and_refreshes_the_entry(settings: Settings) -> None:
    async with serve(settings) as service:
        first = await get(service.client)
        refreshed = await get(service.client, **{"cache-control": "no-cache"})
        after = await get(service.client)
    assert refreshed.headers["x-cache"] == "MISS"
    assert refreshed.json()["computed_at"] != first.json()["computed_at"]
    assert after.headers["x-cache"] == "HIT"
    assert after.json() == refreshed.json()


async def test_a_405_on_an_item_lists_every_method_of_the_path(settings: Settings) -> None:
    async with serve(settings) as service:
        response = await service.client.options("/items/a")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, PUT"


async def test_a_hit_is_answered_without_running_the_route_or_its_dependencies(
    settings: Settings,
) -> None:
    async with serve(settings, app_with_test_routes(settings)) as service:
        responses = [await get(service.client, "/test/counted") for _ in range(3)]
        calls = service.app.state.dependency_calls
    assert [response.headers["x-cache"] for response in responses] == ["MISS", "HIT", "HIT"]
    assert calls == 1


async def test_a_route_that_identifies_its_caller_runs_its_dependencies_on_hits_too(
    settings: Settings,
) -> None:
    async with serve(settings, app_with_test_routes(settings)) as service:
        responses = [await get(service.client, "/test/personal") for _ in range(3)]
        calls = service.app.state.dependency_calls
    assert [response.headers["x-cache"] for response in responses] == ["MISS", "HIT", "HIT"]
    assert calls == 3


async def test_a_304_carries_the_vary_header_the_route_set(settings: Settings) -> None:
    async with serve(settings, app_with_test_routes(settings)) as service:
        miss = await get(service.client, "/test/varied")
        etag = miss.headers["etag"]
        revalidated = await get(service.client, "/test/varied", **{"if-none-match": etag})
    assert revalidated.status_code == 304
    assert revalidated.headers["vary"] == "Accept-Encoding, Accept-Language"
    assert revalidated.headers["etag"] == miss.headers["etag"]
    assert "content-type" not in revalidated.headers


async def test_a_request_with_authorization_bypasses_a_route_that_does_not_vary_on_it(
    settings: Settings,
) -> None:
    async with serve(settings) as service:
        await get(service.client)
        response = await get(service.client, authorization="Bearer someone")
    assert response.headers["x-cache"] == "MISS"


async def test_head_is_answered_from_the_get_entry(settings: Settings) -> None:
    async with serve(settings) as service:
        full = await get(service.client)
        head = await service.client.head("/items/a")
    assert head.status_code == 200
    assert head.headers["x-cache"] == "HIT"
    assert head.content == b""
    assert head.headers["content-length"] == str(len(full.content))


async def test_namespace_invalidation_turns_hits_into_misses(settings: Settings) -> None:
    async with serve(settings) as service:
        await get(service.client, "/items/a")
        await get(service.client, "/items/b")
        cleared = await service.client.delete("/cache/items")
        after = [await get(service.client, path) for path in ("/items/a", "/items/b")]
    assert cleared.status_code == 204
    assert [response.headers["x-cache"] for response in after] == ["MISS", "MISS"]


async def test_put_invalidates_the_items_cached_responses(settings: Settings) -> None:
    async with serve(settings) as service:
        await get(service.client, "/items/a")
        await get(service.client, "/items/a?view=full")
        put = await service.client.put("/items/a", json={"value": "new"})
        plain = await get(service.client, "/items/a")
        variant = await get(service.client, "/items/a?view=full")
        other = await get(service.client, "/items/b")
    assert put.status_code == 200
    assert (plain.headers["x-cache"], plain.json()["value"]) == ("MISS", "new")
    assert variant.headers["x-cache"] == "MISS"
    assert other.headers["x-cache"] == "MISS"


async def test_a_bad_item_id_is_422_and_never_reaches_redis(
    settings: Settings, redis_target: RedisTarget
) -> None:
    async with serve(settings) as service, record_commands(*redis_target.monitor_urls) as recording:
        responses = [
            await service.client.get(path)
            for path in ("/items/has%20space", "/items/" + "x" * 65, "/items/%F0%9F%92%A5")
        ]
    assert [response.status_code for response in responses] == [422, 422, 422]
    assert all(response.json()["error"]["code"] == "validation_error" for response in responses)
    assert "has space" not in " ".join(recording.keys_touched())


async def test_a_cold_key_under_load_from_two_instances_is_computed_once(
    real_settings: SettingsFactory,
) -> None:
    settings = real_settings(demo_compute_delay_ms=200)
    async with serve(settings) as first, serve(settings) as second:
        clients = [first.client, second.client] * 25
        responses = await asyncio.gather(*(get(client, "/items/cold") for client in clients))
    assert {response.status_code for response in responses} == {200}
    assert len({response.json()["computed_at"] for response in responses}) == 1
    assert Counter(response.headers["x-cache"] for response in responses)["MISS"] == 1


async def test_a_hit_costs_exactly_one_round_trip(
    settings: Settings, redis_target: RedisTarget
) -> None:
    async with serve(settings) as service:
        await get(service.client)
        await get(service.client)  # scripts loaded, entry stored
        async with record_commands(*redis_target.monitor_urls) as recording:
            response = await get(service.client)
    assert response.headers["x-cache"] == "HIT"
    assert recording.round_trips_touching("{c:") == ["evalsha"]
    assert recording.writes_touching("{c:") == []


async def test_a_miss_costs_at_most_three_round_trips(
    settings: Settings, redis_target: RedisTarget
) -> None:
    async with serve(settings) as service:
        await get(service.client, "/items/warm-up")
        async with record_commands(*redis_target.monitor_urls) as recording:
            response = await get(service.client, "/items/cold")
    assert response.headers["x-cache"] == "MISS"
    assert recording.round_trips_touching("{c:") == ["evalsha", "evalsha"]  # lookup + store


async def test_data_cache_computes_once_across_instances(settings: Settings) -> None:
    calls = 0

    async def expensive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return {"total": 42}

    async with serve(settings) as first, serve(settings) as second:
        caches: list[Cache] = [first.app.state.cache, second.app.state.cache]
        results = await asyncio.gather(
            *(caches[i % 2].get_or_set("totals", expensive) for i in range(20))
        )
    assert results == [{"total": 42}] * 20
    assert calls == 1


async def test_items_are_still_served_when_redis_is_stopped(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = make_settings(redis_url=own_redis_server.url, demo_compute_delay_ms=0)
    async with serve(settings) as service:
        assert (await get(service.client)).headers["x-cache"] == "MISS"
        own_redis_server.stop()
        responses = [await get(service.client) for _ in range(3)]
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert {response.headers["x-cache"] for response in responses} == {"MISS"}


async def test_a_write_on_one_worker_is_what_every_worker_serves_next(settings: Settings) -> None:
    async with serve(settings) as first, serve(settings) as second:
        await get(second.client, "/items/shared")  # cached: value null
        written = await first.client.put("/items/shared", json={"value": "fresh"})
        # Invalidation times are in ms, and a computation that began in the same ms as the
        # invalidation is not stored (it may have read the old value): begin after it.
        await asyncio.sleep(0.005)
        recomputed = await get(second.client, "/items/shared")
        served = await get(first.client, "/items/shared")
    assert written.status_code == 200
    assert (recomputed.headers["x-cache"], recomputed.json()["value"]) == ("MISS", "fresh")
    assert (served.headers["x-cache"], served.json()["value"]) == ("HIT", "fresh")


async def test_while_redis_is_down_items_fall_back_to_the_last_value_seen_and_writes_are_503(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = make_settings(redis_url=own_redis_server.url, demo_compute_delay_ms=0)
    async with serve(settings) as service:
        await service.client.put("/items/a", json={"value": "kept"})
        own_redis_server.stop()
        read = await get(service.client)
        write = await service.client.put("/items/a", json={"value": "lost?"})
    assert (read.status_code, read.headers["x-cache"]) == (200, "MISS")
    assert read.json()["value"] == "kept"
    assert write.status_code == 503
    assert write.json()["error"]["code"] == "redis_unavailable"


async def test_the_breaker_spares_requests_the_timeout_of_a_hung_redis(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = make_settings(
        redis_url=own_redis_server.url, demo_compute_delay_ms=0, **BREAKER_OPENS_AFTER_TWO_TIMEOUTS
    )
    async with serve(settings) as service:
        durations = await durations_while_frozen(service, own_redis_server, "/items/a", 6)
    assert_the_breaker_spared_the_timeout(durations, settings)


async def test_caching_resumes_when_redis_comes_back(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = make_settings(
        redis_url=own_redis_server.url,
        demo_compute_delay_ms=0,
        redis_breaker_threshold=1,
        redis_breaker_cooldown_seconds=0.2,
    )
    async with serve(settings) as service:
        own_redis_server.stop()
        assert (await get(service.client)).headers["x-cache"] == "MISS"
        own_redis_server.start()
        await asyncio.sleep(0.3)
        labels = [(await get(service.client)).headers["x-cache"] for _ in range(2)]
    assert labels == ["MISS", "HIT"]
