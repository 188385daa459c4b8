"""With sessions on, logged-in users are limited per user and login has its own policy."""

from __future__ import annotations

import httpx
import pytest

from {{ cookiecutter.package_name }}.settings import Settings

from tests.redis_monitor import cost_of, record_commands
from tests.redis_servers import RedisServer
from tests.redis_target import RedisTarget
from tests.service import Service, SettingsFactory, serve

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("clear_of_a_window_edge")]

PASSWORD = "correct horse battery"


@pytest.fixture
def settings(real_settings: SettingsFactory) -> Settings:
    return real_settings(
        password_hash_cost=10, session_secret="s" * 40, rate_limit_default="3/minute"
    )


def client_from(service: Service, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=service.app, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_a_logged_in_user_is_one_bucket_from_any_address(settings: Settings) -> None:
    async with serve(settings) as service:
        first, second = client_from(service, "198.51.100.1"), client_from(service, "198.51.100.2")
        await first.post("/auth/register", json={"username": "erin", "password": PASSWORD})
        await first.post("/auth/login", json={"username": "erin", "password": PASSWORD})
        second.cookies.update(first.cookies)
        statuses = [
            (await client.get("/")).status_code for client in (first, second, first, second)
        ]
        anonymous = await client_from(service, "198.51.100.1").get("/")
        await first.aclose()
        await second.aclose()
    assert statuses == [200, 200, 200, 429]
    assert anonymous.status_code == 200  # the address's own bucket is separate


async def test_a_forged_user_cookie_falls_back_to_the_address(settings: Settings) -> None:
    forged = "u" + "b" * 22 + "." + "c" * 16 + "." + "d" * 43
    async with serve(settings) as service:
        statuses = []
        for _ in range(4):
            service.client.cookies.set("session", forged)
            statuses.append((await service.client.get("/")).status_code)
    assert statuses == [200, 200, 200, 429]


async def test_login_has_its_own_stricter_policy(settings: Settings) -> None:
    async with serve(settings) as service:
        responses = [
            await service.client.post(
                "/auth/login", json={"username": "nobody", "password": PASSWORD}
            )
            for _ in range(6)
        ]
    assert [response.status_code for response in responses] == [401] * 5 + [429]
    assert responses[0].headers["ratelimit-policy"] == '"login";q=5;w=60'


async def test_login_fails_closed_when_its_limit_cannot_be_checked(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = make_settings(redis_url=own_redis_server.url, password_hash_cost=10)
    async with serve(settings) as service:
        own_redis_server.stop()
        response = await service.client.post(
            "/auth/login", json={"username": "nobody", "password": PASSWORD}
        )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "rate_limit_unavailable"


async def log_in(service: Service) -> None:
    await service.client.post("/auth/register", json={"username": "ivy", "password": PASSWORD})
    response = await service.client.post(
        "/auth/login", json={"username": "ivy", "password": PASSWORD}
    )
    assert response.status_code == 200


async def test_a_session_read_and_its_rate_limit_decision_cost_one_round_trip(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = make_settings(redis_url=own_redis_server.url, password_hash_cost=10)
    async with serve(settings) as service:
        await log_in(service)
        await service.client.get("/auth/me")  # scripts loaded
        cost = await cost_of(lambda: service.client.get("/auth/me"), own_redis_server.url)
    assert [response.status_code for response in cost.responses] == [200, 200]
    assert cost.round_trips == 1
    assert cost.commands == ["evalsha", "evalsha"]  # the decision and the read


async def test_each_feature_gets_its_own_reply_from_the_shared_round_trip(
    settings: Settings, redis_target: RedisTarget
) -> None:
    async with serve(settings) as service:
        await log_in(service)
        await service.client.get("/auth/me")  # scripts loaded
        async with record_commands(*redis_target.monitor_urls) as recording:
            response = await service.client.get("/auth/me")
    assert response.json() == {"username": "ivy"}
    assert response.headers["ratelimit"].startswith('"default";r=')
    assert recording.round_trips_touching("{s:") == ["evalsha"]
    assert recording.round_trips_touching("{rl:") == ["evalsha"]


async def test_with_the_sessions_breaker_open_the_limiter_still_decides(
    settings: Settings,
) -> None:
    async with serve(settings) as service:
        await log_in(service)
        breaker = service.app.state.sessions.breaker
        for _ in range(breaker.threshold):
            breaker.failed(ConnectionError("test"))
        response = await service.client.get("/auth/me")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "session_store_unavailable"
    assert "ratelimit" in response.headers
