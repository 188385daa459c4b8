"""Rate-limit logic without Redis: policies, client identity behind proxies, headers."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.ratelimit import Policy, rate_limit, rate_limit_exempt
from {{ cookiecutter.package_name }}.ratelimit.limiter import client_address
from {{ cookiecutter.package_name }}.ratelimit.policy import Decision, route_policy

from tests.service import SettingsFactory

DEFAULT = Policy.parse("100/minute")


def networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part) for part in text.split(","))


def scope(peer: str, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 51000),
        "headers": [(name.encode(), value.encode()) for name, value in headers],
    }


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [("100/minute", 100, 60), ("5/second", 5, 1), (" 7 / hour ", 7, 3600), ("1/day", 1, 86400)],
)
def test_policies_are_written_n_per_period(text: str, limit: int, period: int) -> None:
    policy = Policy.parse(text)
    assert (policy.limit, policy.period_seconds) == (limit, period)


@pytest.mark.parametrize("text", ["100", "0/minute", "-1/minute", "10/week", "ten/minute", ""])
def test_malformed_policies_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="N/second"):
        Policy.parse(text)


def test_an_untrusted_peer_cannot_choose_its_address_with_headers() -> None:
    spoofed = scope(
        "198.51.100.9",
        ("x-forwarded-for", "1.2.3.4"),
        ("forwarded", "for=5.6.7.8"),
    )
    assert client_address(spoofed, networks("10.0.0.0/8")) == "198.51.100.9"
    assert client_address(spoofed, ()) == "198.51.100.9"


def test_behind_a_trusted_proxy_the_last_untrusted_hop_is_the_client() -> None:
    trusted = networks("10.0.0.0/8,127.0.0.1/32")
    request = scope("10.0.0.2", ("x-forwarded-for", "6.6.6.6, 203.0.113.50, 10.0.0.7"))
    # 6.6.6.6 was written by the client itself: only hops proxies added are believed.
    assert client_address(request, trusted) == "203.0.113.50"


def test_every_x_forwarded_for_line_counts_in_order() -> None:
    trusted = networks("10.0.0.0/8")
    request = scope(
        "10.0.0.2", ("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.50, 10.1.1.1")
    )
    assert client_address(request, trusted) == "203.0.113.50"


def test_forwarded_is_read_with_quotes_ports_and_ipv6() -> None:
    trusted = networks("10.0.0.0/8")
    request = scope(
        "10.0.0.2",
        ("forwarded", 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.9:80'),
    )
    assert client_address(request, trusted) == "2001:db8:cafe::/64"


def test_a_malformed_hop_stops_the_walk() -> None:
    trusted = networks("10.0.0.0/8")
    request = scope("10.0.0.2", ("x-forwarded-for", "203.0.113.50, not-an-ip, 10.0.0.3"))
    assert client_address(request, trusted) == "10.0.0.3"


def test_ipv6_clients_share_a_bucket_per_64() -> None:
    first = client_address(scope("2001:db8:1:2::1"), ())
    second = client_address(scope("2001:db8:1:2:ffff::9"), ())
    other = client_address(scope("2001:db8:1:3::1"), ())
    assert first == second == "2001:db8:1:2::/64"
    assert other != first


def test_ipv4_mapped_ipv6_counts_as_ipv4() -> None:
    assert client_address(scope("::ffff:198.51.100.9"), ()) == "198.51.100.9"


def test_a_route_can_override_or_opt_out_through_wrappers() -> None:
    async def login() -> None: ...

    async def health() -> None: ...

    async def other() -> None: ...

    async def wrapper() -> None: ...

    rate_limit("5/minute", name="login", fail_closed=True)(login)
    rate_limit_exempt(health)
    wrapper.__wrapped__ = login  # type: ignore[attr-defined]
    assert route_policy(login, DEFAULT) == Policy(5, 60, "login", fail_closed=True)
    assert route_policy(wrapper, DEFAULT) == Policy(5, 60, "login", fail_closed=True)
    assert route_policy(health, DEFAULT) is None
    assert route_policy(other, DEFAULT) == DEFAULT


def test_a_policy_the_app_gives_a_route_comes_before_the_routes_own() -> None:
    async def login() -> None: ...

    rate_limit_exempt(login)
    given = Policy.parse("3/minute", name="login")
    assert route_policy(login, DEFAULT, {login: given}) == given
    assert route_policy(login, DEFAULT) is None


def test_headers_follow_the_ietf_draft_and_retry_after_only_on_denial() -> None:
    allowed = Decision(DEFAULT, allowed=True, remaining=42, reset_seconds=37, retry_after_seconds=0)
    denied = Decision(DEFAULT, allowed=False, remaining=0, reset_seconds=37, retry_after_seconds=5)
    assert allowed.headers(legacy=False) == {
        "ratelimit-policy": '"default";q=100;w=60',
        "ratelimit": '"default";r=42;t=37',
    }
    assert denied.headers(legacy=False)["retry-after"] == "5"
    assert set(allowed.headers(legacy=True)) >= {
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    }


def test_limited_operations_document_429_and_the_rate_limit_headers(
    make_settings: SettingsFactory,
) -> None:
    paths = create_app(make_settings()).openapi()["paths"]
    limited = paths["/"]["get"]["responses"]
    assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= set(limited["429"]["headers"])
    assert {"RateLimit", "RateLimit-Policy"} <= set(limited["200"]["headers"])
    assert "429" not in paths["/health/live"]["get"]["responses"]  # an exempt path
