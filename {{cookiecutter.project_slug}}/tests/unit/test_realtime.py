"""The real-time building blocks that need no Redis: positions, client frames, the outbox."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.errors import ServiceError
from {{ cookiecutter.package_name }}.realtime.hub import Frame, Outbox
from {{ cookiecutter.package_name }}.realtime.topics import Position, Topic, notifications_of
from {{ cookiecutter.package_name }}.realtime.web import _client_frame
from {{ cookiecutter.package_name }}.settings import Settings

from tests.service import PRODUCTION

pytestmark = pytest.mark.anyio


def production(**overrides: Any) -> Settings:
    values = {**PRODUCTION, "redis_url": "redis://redis:6379/0", "redis_topology": "standalone"}
    values.update(overrides)
    return Settings(_env_file=None, **values)


def test_production_refuses_websockets_from_any_origin() -> None:
    with pytest.raises(ValidationError, match="needs REALTIME_ALLOWED_ORIGINS"):
        production(realtime_allowed_origins=[])


def test_the_allowed_origins_are_exactly_the_ones_listed() -> None:
    settings = production(realtime_allowed_origins="https://a.example, https://b.example")
    assert settings.realtime_origins == {"https://a.example", "https://b.example"}


def test_development_allows_the_local_service_itself() -> None:
    settings = Settings(_env_file=None)
    assert settings.realtime_origins == {"http://127.0.0.1:8000", "http://localhost:8000"}


def test_a_position_is_epoch_and_offset() -> None:
    assert Position.parse("a1b2:42") == Position("a1b2", 42)
    assert str(Position("a1b2", 42)) == "a1b2:42"


@pytest.mark.parametrize("text", [None, "", "42", "a1b2:", ":42", "a1b2:-1", "A1B2:1", "x:1"])
def test_a_malformed_position_is_none(text: str | None) -> None:
    assert Position.parse(text) is None


def test_a_topics_keys_and_channel_share_one_hash_tag() -> None:
    topic = Topic.make("svc", "news")
    keys = (topic.meta_key, topic.stream_key, topic.channel)
    assert {key[key.index("{") : key.index("}") + 1] for key in keys} == {"{rt:news}"}


def test_a_users_notifications_cannot_be_named_by_a_client_topic() -> None:
    topic = notifications_of("svc", "alice")
    assert topic.shown == "me"
    assert topic.name == "@alice"
    with pytest.raises(ServiceError):
        _client_frame(json.dumps({"type": "subscribe", "topic": "@alice"}))


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", "bad_frame"),
        ("[]", "bad_frame"),
        (json.dumps({"type": "publish", "topic": "a"}), "bad_frame"),
        (json.dumps({"type": "subscribe"}), "bad_topic"),
        (json.dumps({"type": "subscribe", "topic": "x" * 65}), "bad_topic"),
        (json.dumps({"type": "subscribe", "topic": "a", "since": 7}), "bad_position"),
        (json.dumps({"type": "subscribe", "topic": "a", "pad": "x" * 5000}), "frame_too_large"),
    ],
)
def test_a_bad_client_frame_says_what_is_wrong(text: str, code: str) -> None:
    with pytest.raises(ServiceError) as refused:
        _client_frame(text)
    assert refused.value.code == code


def test_a_good_client_frame_is_accepted() -> None:
    frame = {"type": "subscribe", "topic": "news.eu-1", "since": "ab:3"}
    assert _client_frame(json.dumps(frame)) == frame


async def test_the_outbox_hands_frames_out_in_order() -> None:
    outbox = Outbox(max_messages=3, max_bytes=100)
    for n in range(3):
        outbox.offer(Frame("message", "t", f"m{n}"))
    assert [(await outbox.take()) for _ in range(3)] == [
        Frame("message", "t", f"m{n}") for n in range(3)
    ]


async def test_an_outbox_over_its_message_count_marks_the_connection_too_slow() -> None:
    outbox = Outbox(max_messages=3, max_bytes=1000)
    for n in range(4):
        outbox.offer(Frame("message", "t", f"m{n}"))
    assert outbox.too_slow
    assert await outbox.take() is None
    assert outbox.size == 0


async def test_an_outbox_over_its_bytes_marks_the_connection_too_slow() -> None:
    outbox = Outbox(max_messages=100, max_bytes=10)
    outbox.offer(Frame("message", "t", "x" * 8))
    outbox.offer(Frame("message", "t", "x" * 8))
    assert outbox.too_slow


async def test_a_closed_outbox_ends_its_writer() -> None:
    outbox = Outbox(max_messages=3, max_bytes=100)
    outbox.close()
    assert await outbox.take() is None
