"""Sessions against a real Redis: fixation, rotation, expiry, revocation, CSRF, costs, outages."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest

from {{ cookiecutter.package_name }}.settings import Settings

from tests.redis_monitor import record_commands
from tests.redis_servers import RedisServer
from tests.redis_target import RedisTarget
from tests.service import PRODUCTION, Service, SettingsFactory, serve

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"
COOKIE = "session"


@pytest.fixture
def settings(real_settings: SettingsFactory) -> Settings:
    return real_settings(password_hash_cost=10, session_secret="s" * 40)


async def login(client: httpx.AsyncClient, username: str = "alice", register: bool = True) -> str:
    """Log in (registering first), and return the CSRF token."""
    if register:
        created = await client.post(
            "/auth/register", json={"username": username, "password": PASSWORD}
        )
        assert created.status_code in (201, 409)
    response = await client.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    token: str = response.json()["csrf_token"]
    return token


def new_client(service: Service, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url=base_url)


async def test_a_client_chosen_session_id_is_never_adopted(
    settings: Settings, redis_target: RedisTarget
) -> None:
    chosen = "a" + "x" * 22 + "." + "y" * 16 + "." + "z" * 43
    async with serve(settings) as service:
        service.client.cookies.set(COOKIE, chosen)
        response = await service.client.patch("/auth/preferences", json={"theme": "dark"})
        issued = response.cookies.get(COOKIE)
        service.client.cookies.clear()
        service.client.cookies.set(COOKIE, chosen)
        with_chosen = await service.client.get("/auth/preferences")
    assert response.status_code == 200
    assert issued is not None
    assert issued != chosen
    ours = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}=")]
    assert len(ours) == 1  # the new session's cookie, not also a deletion of the forged one
    assert "z" * 43 not in issued
    assert with_chosen.json() == {}


async def test_login_replaces_the_session_id_and_the_old_one_dies(settings: Settings) -> None:
    async with serve(settings) as service:
        await service.client.patch("/auth/preferences", json={"theme": "dark"})
        anonymous = service.client.cookies[COOKIE]
        await login(service.client)
        logged_in = service.client.cookies[COOKIE]
        carried = (await service.client.get("/auth/preferences")).json()
        service.client.cookies.clear()
        service.client.cookies.set(COOKIE, anonymous)
        old = await service.client.get("/auth/preferences")
    assert logged_in != anonymous
    assert carried == {"theme": "dark"}
    assert old.json() == {}


async def test_logging_in_again_replaces_the_id_too(settings: Settings) -> None:
    async with serve(settings) as service:
        await login(service.client)
        first = service.client.cookies[COOKIE]
        await login(service.client, register=False)
        second = service.client.cookies[COOKIE]
        service.client.cookies.clear()
        service.client.cookies.set(COOKIE, first)
        old = await service.client.get("/auth/me")
    assert first != second
    assert old.status_code == 401


async def test_an_idle_session_expires(real_settings: SettingsFactory) -> None:
    settings = real_settings(
        password_hash_cost=10, session_idle_ttl_seconds=1, session_touch_interval_seconds=0
    )
    async with serve(settings) as service:
        await login(service.client)
        assert (await service.client.get("/auth/me")).status_code == 200
        await asyncio.sleep(1.3)
        response = await service.client.get("/auth/me")
    assert response.status_code == 401


async def test_use_rolls_the_idle_timer_forward(real_settings: SettingsFactory) -> None:
    settings = real_settings(
        password_hash_cost=10, session_idle_ttl_seconds=1, session_touch_interval_seconds=0
    )
    async with serve(settings) as service:
        await login(service.client)
        for _ in range(5):
            await asyncio.sleep(0.4)
            assert (await service.client.get("/auth/me")).status_code == 200


async def test_a_session_ends_at_its_absolute_age_however_active(
    real_settings: SettingsFactory,
) -> None:
    settings = real_settings(
        password_hash_cost=10,
        session_idle_ttl_seconds=60,
        session_max_age_seconds=2,
        session_touch_interval_seconds=0,
    )
    async with serve(settings) as service:
        await login(service.client)
        statuses = []
        for _ in range(6):
            statuses.append((await service.client.get("/auth/me")).status_code)
            await asyncio.sleep(0.45)
        statuses.append((await service.client.get("/auth/me")).status_code)
    assert statuses[0] == 200
    assert statuses[-1] == 401


async def test_logout_ends_the_session(settings: Settings) -> None:
    async with serve(settings) as service:
        csrf = await login(service.client)
        cookie = service.client.cookies[COOKIE]
        response = await service.client.post("/auth/logout", headers={"x-csrf-token": csrf})
        service.client.cookies.set(COOKIE, cookie)
        after = await service.client.get("/auth/me")
    assert response.status_code == 204
    assert after.status_code == 401


async def test_logout_everywhere_ends_three_parallel_sessions(settings: Settings) -> None:
    async with serve(settings) as service:
        clients = [new_client(service) for _ in range(3)]
        tokens = [await login(client, register=client is clients[0]) for client in clients]
        assert [(await c.get("/auth/me")).status_code for c in clients] == [200, 200, 200]
        listed = (await clients[0].get("/auth/sessions")).json()
        response = await clients[1].post("/auth/logout-all", headers={"x-csrf-token": tokens[1]})
        after = [(await c.get("/auth/me")).status_code for c in clients]
        for client in clients:
            await client.aclose()
    assert len(listed) == 3
    assert response.status_code == 204
    assert after == [401, 401, 401]


async def test_the_session_list_shows_live_sessions_but_no_ids(settings: Settings) -> None:
    async with serve(settings) as service:
        other = new_client(service)
        await login(other)
        await login(service.client, register=False)
        listed = (await service.client.get("/auth/sessions")).json()
        other_cookie = other.cookies[COOKIE]
        await other.aclose()
    assert len(listed) == 2
    assert [entry["current"] for entry in listed].count(True) == 1
    for entry in listed:
        assert set(entry) == {"id", "created_at", "last_seen_at", "user_agent", "current"}
        assert entry["id"] not in other_cookie


async def test_development_cookies_are_httponly_lax_and_not_secure(settings: Settings) -> None:
    async with serve(settings) as service:
        await login(service.client)
        response = await service.client.post(
            "/auth/login", json={"username": "alice", "password": PASSWORD}
        )
    header = response.headers["set-cookie"]
    assert header.startswith(f"{COOKIE}=")
    assert "HttpOnly" in header
    assert "SameSite=lax" in header
    assert "Path=/" in header
    assert "Secure" not in header


async def test_production_cookies_are_secure_with_the_host_prefix(
    real_settings: SettingsFactory,
) -> None:
    settings = real_settings(**PRODUCTION, password_hash_cost=10)
    async with serve(settings) as service:
        client = new_client(service, base_url="https://testserver")
        await login(client)
        response = await client.post(
            "/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        me = await client.get("/auth/me")
        await client.aclose()
    header = response.headers["set-cookie"]
    assert header.startswith("__Host-session=")
    assert "Secure" in header
    assert "HttpOnly" in header
    assert "Path=/" in header
    assert "Domain" not in header
    assert me.status_code == 200


@pytest.mark.parametrize("header", [None, "wrong-token"])
async def test_state_changes_without_the_right_csrf_token_are_403(
    settings: Settings, header: str | None
) -> None:
    async with serve(settings) as service:
        await login(service.client)
        headers = {"x-csrf-token": header} if header else {}
        responses = [
            await service.client.post("/auth/logout", headers=headers),
            await service.client.post("/auth/logout-all", headers=headers),
            await service.client.patch("/auth/preferences", json={"a": 1}, headers=headers),
        ]
        still_in = await service.client.get("/auth/me")
    assert [response.status_code for response in responses] == [403, 403, 403]
    assert responses[0].json()["error"]["code"] == "csrf_failed"
    assert still_in.status_code == 200


async def test_responses_with_session_data_or_tokens_say_no_store(settings: Settings) -> None:
    async with serve(settings) as service:
        await service.client.post("/auth/register", json={"username": "nora", "password": PASSWORD})
        body = {"username": "nora", "password": PASSWORD}
        login = await service.client.post("/auth/login", json=body)
        me = await service.client.get("/auth/me")
        preferences = await service.client.get("/auth/preferences")
    for response in (login, me, preferences):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"


async def test_a_read_only_request_writes_nothing_in_one_round_trip(
    settings: Settings, redis_target: RedisTarget
) -> None:
    async with serve(settings) as service:
        await login(service.client)
        await service.client.get("/auth/me")  # script loaded
        async with record_commands(*redis_target.monitor_urls) as recording:
            response = await service.client.get("/auth/me")
    assert response.status_code == 200
    assert recording.round_trips_touching("{s:") == ["evalsha"]
    assert recording.writes_touching("{s:") == []


async def test_login_costs_two_round_trips(settings: Settings, redis_target: RedisTarget) -> None:
    async with serve(settings) as service:
        await login(service.client)
        service.client.cookies.clear()
        async with record_commands(*redis_target.monitor_urls) as recording:
            await login(service.client, register=False)
    # The account, then the new session.
    assert recording.round_trips_touching("{s:") == ["get", "evalsha"]


async def test_concurrent_changes_to_different_fields_are_both_kept(settings: Settings) -> None:
    async with serve(settings) as service:
        csrf = await login(service.client)
        headers = {"x-csrf-token": csrf}
        changes = [{f"field{i}": i} for i in range(10)]
        await asyncio.gather(
            *(service.client.patch("/auth/preferences", json=c, headers=headers) for c in changes)
        )
        stored = (await service.client.get("/auth/preferences")).json()
    assert stored == {f"field{i}": i for i in range(10)}


async def test_a_redis_outage_is_503_never_500_and_never_logged_in(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = make_settings(redis_url=own_redis_server.url, password_hash_cost=10)
    async with serve(settings, raise_app_exceptions=False) as service:
        await login(service.client)
        own_redis_server.stop()
        responses = [
            await service.client.get("/auth/me"),
            await service.client.get("/auth/sessions"),
            await service.client.post(
                "/auth/login", json={"username": "alice", "password": PASSWORD}
            ),
            await service.client.patch("/auth/preferences", json={"a": 1}),
        ]
    assert [response.status_code for response in responses] == [503, 503, 503, 503]
    assert all(response.json()["error"]["code"].endswith("_unavailable") for response in responses)


@pytest.mark.parametrize(
    "cookie",
    [
        "u" + "b" * 22 + "." + "c" * 16 + "." + "d" * 43,  # well-formed, never issued
        "tampered." + "x" * 20,
        "",
        "x" * 8192,
        "sessión-ünïcode",
    ],
)
async def test_bad_cookies_read_as_no_session_never_500(settings: Settings, cookie: str) -> None:
    async with serve(settings, raise_app_exceptions=False) as service:
        header = {b"cookie": f"{COOKIE}={cookie}".encode()}
        me = await service.client.get("/auth/me", headers=header)
        prefs = await service.client.get("/auth/preferences", headers=header)
    assert me.status_code == 401
    assert prefs.status_code == 200
    assert prefs.json() == {}


async def test_redis_keys_never_contain_a_raw_session_id(
    settings: Settings, redis_target: RedisTarget
) -> None:
    async with serve(settings) as service, record_commands(*redis_target.monitor_urls) as recording:
        await service.client.patch("/auth/preferences", json={"theme": "dark"})
        await login(service.client)
        await service.client.get("/auth/me")
        token = service.client.cookies[COOKIE].rsplit(".", 1)[1]
    admin = redis_target.admin()
    try:
        keys = [
            key.decode() async for key in admin.scan_iter(match=f"{settings.redis_key_prefix}:*")
        ]
    finally:
        await admin.aclose()
    assert keys
    assert not [key for key in keys if token in key]
    assert token not in " ".join(recording.keys_touched())
    assert any(hashlib.sha256(token.encode()).hexdigest()[:32] in key for key in keys)


async def test_unknown_users_cost_the_same_password_work_as_wrong_passwords(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    real_scrypt = hashlib.scrypt

    def counting_scrypt(password: bytes, **kwargs: Any) -> bytes:
        calls.append({key: kwargs[key] for key in ("n", "r", "p")})
        derived: bytes = real_scrypt(password, **kwargs)
        return derived

    async with serve(settings) as service:
        await service.client.post(
            "/auth/register", json={"username": "alice", "password": PASSWORD}
        )
        monkeypatch.setattr(hashlib, "scrypt", counting_scrypt)
        wrong = await service.client.post(
            "/auth/login", json={"username": "alice", "password": "x" * 10}
        )
        unknown = await service.client.post(
            "/auth/login", json={"username": "nobody", "password": "x" * 10}
        )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert len(calls) == 2
    assert calls[0] == calls[1]


async def test_a_taken_username_is_409(settings: Settings) -> None:
    async with serve(settings) as service:
        body = {"username": "carol", "password": PASSWORD}
        first = await service.client.post("/auth/register", json=body)
        second = await service.client.post("/auth/register", json=body | {"username": "CAROL"})
    assert (first.status_code, second.status_code) == (201, 409)


@pytest.mark.parametrize(
    "body",
    [
        {"username": "a", "password": PASSWORD},
        {"username": "bad name", "password": PASSWORD},
        {"username": "dave", "password": "short"},
        {"username": "dave"},
    ],
)
async def test_invalid_registrations_are_422(settings: Settings, body: dict[str, str]) -> None:
    async with serve(settings) as service:
        response = await service.client.post("/auth/register", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_two_instances_share_sessions(settings: Settings) -> None:
    async with serve(settings) as first, serve(settings) as second:
        await login(first.client)
        second.client.cookies.set(COOKIE, first.client.cookies[COOKIE])
        response = await second.client.get("/auth/me")
    assert response.json() == {"username": "alice"}
