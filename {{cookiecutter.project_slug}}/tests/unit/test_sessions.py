"""Session logic that needs no real Redis: cookie parsing, signing, settings, passwords."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.api.auth import hash_password, verify_password
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.sessions.store import SessionCookie, SessionStore, user_tag
from {{ cookiecutter.package_name }}.settings import Settings

from tests.service import PRODUCTION, Service, SettingsFactory

pytestmark = pytest.mark.anyio

TOKEN = "A" * 43
TAG = "u" + "b" * 22
SIGNATURE = "c" * 16


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not-a-session",
        f"{TAG}.{SIGNATURE}.{TOKEN}x",  # token too long
        f"x{TAG[1:]}.{SIGNATURE}.{TOKEN}",  # unknown tag kind
        f"{TAG}.{SIGNATURE}.{TOKEN[:-1]}é",  # non-ASCII
        "a" * 8192,  # oversized
        f"{TAG}.{SIGNATURE}.{TOKEN};admin=1",
    ],
)
def test_anything_but_a_well_formed_cookie_is_no_cookie(value: str) -> None:
    assert SessionCookie.parse(value) is None


def test_a_well_formed_cookie_parses() -> None:
    cookie = SessionCookie.parse(f"{TAG}.{SIGNATURE}.{TOKEN}")
    assert cookie is not None
    assert (cookie.tag, cookie.signature, cookie.token) == (TAG, SIGNATURE, TOKEN)


def test_the_user_tag_is_stable_and_does_not_show_the_username() -> None:
    assert user_tag("alice") == user_tag("alice")
    assert user_tag("alice") != user_tag("bob")
    assert "alice" not in user_tag("alice")


async def test_only_cookies_signed_by_this_service_identify_a_user(
    memory_service: Service,
) -> None:
    store: SessionStore = memory_service.app.state.sessions
    session = await store.login("alice", None, "test")
    assert store.verified_user_tag(session.cookie.value) == user_tag("alice")
    forged = SessionCookie(tag=user_tag("bob"), signature=SIGNATURE, token=TOKEN).value
    assert store.verified_user_tag(forged) is None
    assert store.verified_user_tag("garbage") is None


async def test_anonymous_sessions_identify_nobody(memory_service: Service) -> None:
    store: SessionStore = memory_service.app.state.sessions
    session = await store.create({"theme": "dark"})
    assert store.verified_user_tag(session.cookie.value) is None


def test_production_needs_a_long_session_secret(make_settings: SettingsFactory) -> None:
    with pytest.raises(ValidationError, match="SESSION_SECRET"):
        make_settings(
            app_env="production", redis_url="redis://redis:6379/0", session_secret="short"
        )


def test_production_refuses_insecure_cookies(make_settings: SettingsFactory) -> None:
    with pytest.raises(ValidationError, match="SESSION_COOKIE_SECURE"):
        make_settings(
            app_env="production",
            redis_url="redis://redis:6379/0",
            session_secret="x" * 32,
            session_cookie_secure=False,
        )


def test_secure_cookies_get_the_host_prefix() -> None:
    production = Settings(
        _env_file=None, redis_url="redis://redis:6379/0", redis_topology="standalone", **PRODUCTION
    )
    development = Settings(_env_file=None)
    assert (production.session_cookie_key, production.session_cookie_is_secure) == (
        "__Host-session",
        True,
    )
    assert (development.session_cookie_key, development.session_cookie_is_secure) == (
        "session",
        False,
    )


def test_passwords_verify_only_against_their_own_hash() -> None:
    stored = hash_password("correct horse", cost=10)
    assert stored.startswith("scrypt$10$")
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong horse", stored)
    assert hash_password("correct horse", cost=10) != stored  # salted


def test_session_operations_document_their_answers_and_security(
    make_settings: SettingsFactory,
) -> None:
    schema = create_app(make_settings()).openapi()
    logout = schema["paths"]["/auth/logout"]["post"]
    me = schema["paths"]["/auth/me"]["get"]
    assert {"401", "403", "503"} <= set(logout["responses"])
    assert logout["security"] == [{"sessionCookie": [], "csrfToken": []}]
    assert me["security"] == [{"sessionCookie": []}]
    assert "403" not in me["responses"]  # a safe method: no CSRF check
    assert me["responses"]["200"]["headers"]["Cache-Control"]["description"].startswith("no-store")
    assert set(schema["components"]["securitySchemes"]) == {"sessionCookie", "csrfToken"}
