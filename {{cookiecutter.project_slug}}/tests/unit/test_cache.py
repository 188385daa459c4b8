"""Cache logic that does not need a real Redis (the Lua paths are proven in integration)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from starlette.datastructures import Headers, MutableHeaders

from {{ cookiecutter.package_name }}.cache import Cache, CacheSerializationError, cached
from {{ cookiecutter.package_name }}.cache.http import (
    cache_directives,
    merge_vary,
    parse_if_none_match,
    request_variant,
)
from {{ cookiecutter.package_name }}.cache.store import encode_json, entity_tag
from {{ cookiecutter.package_name }}.main import create_app

from tests.service import Service, SettingsFactory

pytestmark = pytest.mark.anyio


class Point(BaseModel):
    x: int
    y: int


def test_entity_tag_depends_only_on_the_bytes() -> None:
    assert entity_tag(b'{"a":1}') == entity_tag(b'{"a":1}')
    assert entity_tag(b'{"a":1}') != entity_tag(b'{"a":2}')
    assert entity_tag(b"x")[0] == entity_tag(b"x")[-1] == '"'  # a strong tag: no W/


def test_if_none_match_reads_lists_weak_tags_and_star() -> None:
    assert parse_if_none_match('"a", W/"b" ,*') == ('"a"', '"b"', "*")
    assert parse_if_none_match("garbage, 'x'") == ()
    assert parse_if_none_match(None) == ()


def test_request_directives_come_from_cache_control_and_pragma() -> None:
    assert cache_directives("no-cache, max-age=0", "no-cache") == {"no-cache", "max-age"}
    assert cache_directives(None) == set()


def test_query_parameter_order_does_not_change_the_variant() -> None:
    headers = Headers({})
    assert request_variant("b=2&a=1", (), headers) == request_variant("a=1&b=2", (), headers)
    assert request_variant("a=1", (), headers) != request_variant("a=2", (), headers)


def test_declared_vary_headers_change_the_variant() -> None:
    english = Headers({"accept-language": "en"})
    french = Headers({"accept-language": "fr"})
    vary = ("accept-language",)
    assert request_variant("", vary, english) != request_variant("", vary, french)
    assert request_variant("", (), english) == request_variant("", (), french)


def test_vary_keeps_the_routes_own_names_and_adds_each_declared_name_once() -> None:
    headers = MutableHeaders({"vary": "Accept-Encoding, accept-language"})
    merge_vary(headers, ("accept-language", "authorization"))
    assert headers["vary"] == "Accept-Encoding, accept-language, Authorization"
    empty = MutableHeaders({})
    merge_vary(empty, ())
    assert "vary" not in empty


def test_pydantic_models_encode_as_json() -> None:
    assert encode_json({"p": Point(x=1, y=2)}) == b'{"p":{"x":1,"y":2}}'


@pytest.mark.parametrize("value", [object(), {"n": float("nan")}, b"\xff", [len]])
def test_values_that_are_not_json_raise_a_clear_error(value: object) -> None:
    with pytest.raises(CacheSerializationError, match="cannot cache"):
        encode_json(value)


def test_a_bad_namespace_is_refused_when_the_route_is_declared() -> None:
    with pytest.raises(ValueError, match="namespace"):
        cached(namespace="Has Spaces")


async def test_unserializable_values_fail_at_the_call_site_and_free_the_key(
    memory_service: Service,
) -> None:
    cache: Cache = memory_service.app.state.cache

    async def bad() -> object:
        return object()

    async def good() -> dict[str, int]:
        return {"ok": 1}

    with pytest.raises(CacheSerializationError):
        await cache.get_or_set("k", bad)
    # The lock was released: the next caller computes at once instead of waiting.
    assert await cache.get_or_set("k", good) == {"ok": 1}


async def test_models_come_back_as_models_on_miss_and_hit(memory_service: Service) -> None:
    cache: Cache = memory_service.app.state.cache
    calls = 0

    async def produce() -> Point:
        nonlocal calls
        calls += 1
        return Point(x=1, y=2)

    first = await cache.get_or_set("point", produce, model=Point)
    second = await cache.get_or_set("point", produce, model=Point)
    assert first == second == Point(x=1, y=2)
    assert calls == 1


async def test_ttl_jitter_shortens_but_never_lengthens(memory_service: Service) -> None:
    cache: Cache = memory_service.app.state.cache
    values = {cache.ttl_ms(10) for _ in range(200)}
    assert all(9_000 <= value <= 10_000 for value in values)
    assert len(values) > 1


def test_a_cached_route_documents_304_and_the_cache_headers(make_settings: SettingsFactory) -> None:
    operation = create_app(make_settings()).openapi()["paths"]["/items/{item_id}"]["get"]
    assert "304" in operation["responses"]
    assert {"ETag", "Cache-Control", "X-Cache"} <= set(operation["responses"]["200"]["headers"])
