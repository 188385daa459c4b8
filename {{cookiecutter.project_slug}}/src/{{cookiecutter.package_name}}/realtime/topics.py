"""Topic names, their positions (`<epoch>:<offset>`) and where a topic lives in Redis."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..scripts import hash_tagged

TOPIC_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
TOPIC = re.compile(TOPIC_PATTERN)
# The connected user's own notifications. Clients say `me`; in Redis it is the user's topic.
MY_NOTIFICATIONS = "me"
POSITION = re.compile(r"^([0-9a-f]{1,32}):([0-9]{1,18})$")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message sits in its topic: the epoch of the topic's history, and the offset."""

    epoch: str
    offset: int

    @classmethod
    def parse(cls, text: str | None) -> Position | None:
        match = POSITION.match(text or "")
        return cls(match[1], int(match[2])) if match else None

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic as Redis holds it. `name` is its name in Redis; `shown` is what clients call it
    (they differ for `me`). The meta hash, the history stream and the channel share one hash
    tag, so the publish script touches one Cluster slot."""

    name: str
    shown: str
    meta_key: str
    stream_key: str
    channel: str

    @classmethod
    def make(cls, prefix: str, name: str, shown: str | None = None) -> Topic:
        tag = f"rt:{name}"
        return cls(
            name=name,
            shown=shown or name,
            meta_key=hash_tagged(prefix, tag, "meta"),
            stream_key=hash_tagged(prefix, tag, "history"),
            channel=hash_tagged(prefix, tag, "live"),
        )


def notifications_of(prefix: str, username: str) -> Topic:
    """A user's notification topic. `@` cannot start a client's topic name, so no client can
    name another user's topic directly."""
    return Topic.make(prefix, f"@{username}", shown=MY_NOTIFICATIONS)
