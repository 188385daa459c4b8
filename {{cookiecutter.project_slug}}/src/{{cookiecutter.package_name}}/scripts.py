"""Helpers every feature's Redis layout uses: Lua scripts shipped beside the code, hash-tagged
keys, and the short digests and encodings that go into keys and cookies."""

from __future__ import annotations

import base64
import hashlib
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from .redis_client import SCRIPT_NAMES, RedisClient


def hash_tagged(prefix: str, tag: str, *parts: str) -> str:
    """Build `<prefix>:{<tag>}:<parts>`: keys with the same tag share a Cluster slot."""
    return ":".join((prefix, "{" + tag + "}", *parts))


def digest(text: str | bytes, length: int = 32) -> str:
    """The first `length` hex digits of SHA-256: names keys after secrets or long inputs."""
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:length]


def b64url(data: bytes) -> str:
    """URL-safe base64 without padding: safe in cookies, headers and key names."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LuaScript:
    """A Lua script shipped in a feature's `lua/` folder, run with EVALSHA (SCRIPT LOAD on
    NOSCRIPT). `package` is the feature's package, e.g. `LuaScript(__package__, "read.lua")`."""

    def __init__(self, package: str | None, filename: str) -> None:
        if not package:
            raise ValueError("LuaScript needs the package whose lua/ folder holds the script")
        self.source = (resources.files(package) / "lua" / filename).read_text("utf-8")
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        # "<feature>.<script>", such as cache.lookup: how its EVALSHAs are signalled.
        self.name = f"{package.rsplit('.', 1)[-1]}.{filename.removesuffix('.lua')}"
        SCRIPT_NAMES[self.sha] = self.name

    async def __call__(
        self, client: RedisClient, keys: list[str], args: list[str | int | float | bytes]
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # Loading and retrying is safe: NOSCRIPT means the script did not run.
            return await self.load_and_run(client, keys, args)

    async def load_and_run(
        self, client: RedisClient, keys: list[str], args: list[str | int | float | bytes]
    ) -> Any:
        """SCRIPT LOAD, then EVALSHA: for a script Redis answered NOSCRIPT to."""
        await client.script_load(self.source)
        return await client.evalsha(self.sha, len(keys), *keys, *args)
