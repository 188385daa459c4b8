"""Bad requests get a clear 4xx in the error shape, never a 5xx: a table of them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.service import Service

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Bad:
    name: str
    method: str
    path: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


JSON = {"content-type": "application/json"}

BAD_REQUESTS = [
    Bad("unknown path", "GET", "/no/such/route", 404),
    Bad("method the path does not serve", "POST", "/health/live", 405),
    Bad("declared body over MAX_BODY_BYTES", "POST", "/", 413, {"content-length": "2000000"}),
    Bad("Content-Length that is not a number", "POST", "/", 400, {"content-length": "many"}),
    Bad("garbage X-Forwarded-For", "GET", "/", 200, {"x-forwarded-for": "not, an, ip,,,"}),
    Bad("broken Forwarded", "GET", "/", 200, {"forwarded": 'for="[2001:db8::1;proto=http'}),
    Bad("huge X-Forwarded-For", "GET", "/", 200, {"x-forwarded-for": "1.2.3.4, " * 2000}),
    Bad("garbage in every header the service reads", "GET", "/", 200,
        {"cookie": "\x01;;==;", "if-none-match": "W/", "cache-control": "max-age=x, ,="}),
{%- if cookiecutter.use_cache %}
    Bad("malformed If-None-Match", "GET", "/items/a", 200, {"if-none-match": 'W/"open, *x'}),
    Bad("huge If-None-Match", "GET", "/items/a", 200, {"if-none-match": '"x", ' * 3000}),
    Bad("nonsense Cache-Control", "GET", "/items/a", 200, {"cache-control": "no-cache=, =, x"}),
    Bad("item id with a space", "GET", "/items/has%20space", 422),
    Bad("item id too long", "GET", "/items/" + "x" * 65, 422),
    Bad("item body that is not JSON", "PUT", "/items/a", 422, JSON, b"{not json"),
    Bad("item body of the wrong type", "PUT", "/items/a", 422, JSON, b'{"value": 7}'),
    Bad("item value too long", "PUT", "/items/a", 422, JSON,
        b'{"value": "' + b"x" * 1001 + b'"}'),
    Bad("item without a body", "PUT", "/items/a", 422),
{%- endif %}
{%- if cookiecutter.use_sessions %}
    Bad("garbage session cookie", "GET", "/auth/me", 401, {"cookie": "session=garbage"}),
    Bad("oversized session cookie", "GET", "/auth/me", 401, {"cookie": "session=" + "u" * 5000}),
    Bad("forged session cookie", "GET", "/auth/me", 401,
        {"cookie": "session=u" + "b" * 22 + "." + "c" * 16 + "." + "d" * 43}),
    Bad("login body that is not JSON", "POST", "/auth/login", 422, JSON, b"{"),
    Bad("login without a password", "POST", "/auth/login", 422, JSON, b'{"username": "x"}'),
    Bad("register with a huge username", "POST", "/auth/register", 422, JSON,
        b'{"username": "' + b"u" * 500 + b'", "password": "correct horse battery"}'),
    Bad("preferences that are not an object", "PATCH", "/auth/preferences", 422, JSON,
        b"[1, 2]"),
    Bad("preferences with a bad field name", "PATCH", "/auth/preferences", 422, JSON,
        b'{"a b": 1}'),
    Bad("logout without a session", "POST", "/auth/logout", 401),
    Bad("session body over MAX_BODY_BYTES", "PATCH", "/auth/preferences", 413, JSON,
        b'{"a": "' + b"x" * 1_100_000 + b'"}'),
{%- endif %}
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[bad.name for bad in BAD_REQUESTS])
async def test_a_bad_request_gets_its_documented_answer(memory_service: Service, bad: Bad) -> None:
    request = memory_service.client.build_request(
        bad.method, bad.path, headers=bad.headers, content=bad.body
    )
    response = await memory_service.client.send(request)
    assert response.status_code == bad.status, response.text[:300]
    if bad.status >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str)
        assert isinstance(error["message"], str)
