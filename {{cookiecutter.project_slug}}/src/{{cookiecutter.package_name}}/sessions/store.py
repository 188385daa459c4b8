"""Server-side sessions in Redis, safe by default: the key layout and every Redis call.

* Ids are 256-bit random tokens the server chooses; a cookie the server did not issue is
  never adopted (an unknown id reads as "no session", and a new session gets a new id).
* Redis keys hold a hash of the token, never the token: a dump or MONITOR reveals no
  live session.
* Reading costs one round trip, shared with the other features' work for the request
  (request_path.py). A read writes only in two cases: it rolls the idle timer
  forward when SESSION_TOUCH_INTERVAL_SECONDS have passed since the last roll, and it
  deletes a session it finds dead (past its maximum age, or logged out everywhere; an
  idle session is gone already, its key's TTL having run out).
  Changes are written per field, so concurrent requests that change different fields keep
  each other's work.
* Login replaces the id (the old one stops working at once); logout ends one session;
  "log out everywhere" ends all of a user's sessions in O(1).
* An idle TTL and an absolute maximum age; HttpOnly, SameSite and, in production,
  Secure cookies with the `__Host-` prefix; a CSRF token per session.
* Fails closed: when Redis is unavailable, routes that need a session answer 503.
* Session data is JSON, never pickle.

A cookie is `<tag>.<signature>.<token>`. The tag is `u` + a hash of the username for a
logged-in session (so all of a user's keys share one Cluster hash tag) or `a` + random
characters for an anonymous one; the signature lets other layers (the rate limiter) trust
the tag without a Redis round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from ..breaker import CircuitBreaker, RedisUnavailableError
from ..errors import ServiceError
from ..features import NOTHING, Call, Outcome
from ..redis_client import RedisClient
from ..scripts import LuaScript, b64url, digest, hash_tagged
from ..settings import Settings
from ..signals import UNHEARD, Signals

logger = logging.getLogger(__name__)

READ = LuaScript(__package__, "read.lua")
CREATE = LuaScript(__package__, "create.lua")
WRITE = LuaScript(__package__, "write.lua")
LOGIN = LuaScript(__package__, "login.lua")
LOGOUT = LuaScript(__package__, "logout.lua")
LOGOUT_ALL = LuaScript(__package__, "logout_all.lua")
LIST = LuaScript(__package__, "list.lua")

COOKIE_RE = re.compile(
    r"^(?P<tag>[ua][A-Za-z0-9_-]{22})\.(?P<signature>[A-Za-z0-9_-]{16})\.(?P<token>[A-Za-z0-9_-]{43})$"
)
DATA_PREFIX = "d:"
FIELD_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_LISTED_SESSIONS = 100


def user_tag(username: str) -> str:
    """The tag of every key of a user's sessions: `u` + a hash of the username."""
    return "u" + b64url(hashlib.sha256(b"user\0" + username.encode()).digest())[:22]


class SessionStoreUnavailableError(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "session_store_unavailable",
            "Sessions are unavailable right now; try again shortly.",
            headers={"Retry-After": "1"},
        )


@dataclass(frozen=True)
class SessionCookie:
    tag: str
    signature: str
    token: str

    @property
    def value(self) -> str:
        return f"{self.tag}.{self.signature}.{self.token}"

    @property
    def digest(self) -> str:
        return digest(self.token)

    @classmethod
    def parse(cls, value: str | None) -> SessionCookie | None:
        """A well-formed cookie, or None for anything else (empty, oversized, tampered)."""
        if not value or len(value) > 128:
            return None
        match = COOKIE_RE.match(value)
        return cls(**match.groupdict()) if match else None


@dataclass
class Session:
    cookie: SessionCookie
    user: str | None
    created_ms: int
    last_seen_ms: int
    expires_ms: int
    csrf_token: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_authenticated(self) -> bool:
        return self.user is not None


@dataclass(frozen=True)
class SessionInfo:
    id: str
    created_at: datetime
    last_seen_at: datetime
    user_agent: str
    current: bool


def _ms_to_datetime(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


class SessionStore:
    def __init__(self, redis: RedisClient, settings: Settings, signals: Signals = UNHEARD) -> None:
        self._redis = redis
        self._signals = signals
        self._prefix = settings.redis_key_prefix
        self._idle_ms = int(settings.session_idle_ttl_seconds * 1000)
        self._max_age_ms = int(settings.session_max_age_seconds * 1000)
        self._touch_ms = int(settings.session_touch_interval_seconds * 1000)
        secret = settings.session_secret
        if secret is None:
            logger.warning(
                "SESSION_SECRET is not set: using a random one for this process. Set it so "
                "every process and restart can verify session cookies' user tags."
            )
            self._secret = secrets.token_bytes(32)
        else:
            self._secret = secret.get_secret_value().encode()
        self.breaker = CircuitBreaker.from_settings("sessions", settings, logger, signals)
        self._signatures: dict[str, str] = {}
        # Called with the username after "log out everywhere" (other features end what
        # they hold for that user, such as open WebSockets).
        self.logged_out_everywhere: list[Callable[[str], Awaitable[None]]] = []

    # -- keys -------------------------------------------------------------------------

    def _key(self, tag: str, *parts: str) -> str:
        return hash_tagged(self._prefix, f"s:{tag}", *parts)

    def session_key(self, cookie: SessionCookie) -> str:
        return self._key(cookie.tag, cookie.digest)

    def account_key(self, username: str) -> str:
        """Where the demo keeps an account: beside the user's sessions, in their Cluster slot."""
        return self._key(user_tag(username), "account")

    def _new_cookie(self, tag: str) -> SessionCookie:
        return SessionCookie(tag=tag, signature=self._sign(tag), token=secrets.token_urlsafe(32))

    def _sign(self, tag: str) -> str:
        signature = self._signatures.get(tag)
        if signature is None:  # a user's tag is signed once; the memo is bounded
            if len(self._signatures) >= 4096:
                self._signatures.clear()
            signature = b64url(hmac.new(self._secret, tag.encode(), hashlib.sha256).digest())[:16]
            self._signatures[tag] = signature
        return signature

    def verified_user_tag(self, cookie_value: str | None) -> str | None:
        """The user tag of a cookie this service signed, without asking Redis.

        For identifying callers (rate limiting): a forged or anonymous cookie gives None.
        It says who the cookie was issued to, not that the session is still live.
        """
        cookie = SessionCookie.parse(cookie_value)
        if cookie is None or not cookie.tag.startswith("u"):
            return None
        if not hmac.compare_digest(cookie.signature, self._sign(cookie.tag)):
            return None
        return cookie.tag

    # -- Redis calls --------------------------------------------------------------------

    async def _call(self, name: str, operation: Callable[[], Awaitable[Any]]) -> Any:
        """One Redis operation; sessions fail closed, so unavailability is a 503. Signalled
        as a `session_operation` with its name and outcome (ok, unavailable or error)."""
        try:
            result = await self.breaker.call(operation)
        except RedisUnavailableError as error:
            self._signals.count("session_operation", name, "unavailable")
            raise SessionStoreUnavailableError from error
        except Exception:
            self._signals.count("session_operation", name, "error")
            raise
        self._signals.count("session_operation", name, "ok")
        return result

    async def _run(self, script: LuaScript, keys: list[str], args: list[Any]) -> Any:
        operation = script.name.rpartition(".")[2]  # sessions.read: read
        return await self._call(operation, lambda: script(self._redis, keys, args))

    @staticmethod
    def _field(name: str) -> str:
        if not FIELD_NAME_RE.match(name):
            raise ValueError(f"session field name {name!r}: use 1-64 of A-Z a-z 0-9 _ . -")
        return DATA_PREFIX + name

    @classmethod
    def _encode_data(cls, values: Mapping[str, Any]) -> list[str]:
        flat: list[str] = []
        for name, value in values.items():
            flat += [cls._field(name), json.dumps(value, separators=(",", ":"))]
        return flat

    # -- operations -----------------------------------------------------------------------

    def read_call(self, cookie: SessionCookie, settle: Callable[[Any], Outcome]) -> Call:
        """The one EVALSHA that reads a session, for the request path to send with the
        other features' calls. See the module docstring for the two cases in which it
        writes."""

        def signalled(reply: Any) -> Outcome:
            if not isinstance(reply, Exception):
                outcome = "ok"
            elif isinstance(reply, RedisUnavailableError):
                outcome = "unavailable"
            else:
                outcome = "error"
            self._signals.count("session_operation", "read", outcome)
            return settle(reply)

        return Call(
            script=READ,
            keys=[self.session_key(cookie), self._key(cookie.tag, "meta")],
            args=[self._touch_ms, self._idle_ms],
            breaker=self.breaker,
            settle=signalled,
        )

    async def load(self, cookie_value: str | None) -> Session | None:
        """The live session this cookie names, or None. One round trip."""
        cookie = SessionCookie.parse(cookie_value)
        if cookie is None:
            return None
        call = self.read_call(cookie, lambda _: NOTHING)
        reply = await self._run(call.script, call.keys, call.args)
        return self.session_from(cookie, reply)

    @staticmethod
    def session_from(cookie: SessionCookie, reply: Any) -> Session | None:
        """The session in a reply of read.lua. A reply that is an error raises it: 503 if
        Redis could not be asked."""
        if isinstance(reply, RedisUnavailableError):
            raise SessionStoreUnavailableError from reply
        if isinstance(reply, Exception):
            raise reply
        if not reply:
            return None
        fields = {
            key.decode(): value.decode()
            for key, value in zip(reply[1::2], reply[2::2], strict=True)
        }
        return Session(
            cookie=cookie,
            user=fields.get("_u"),
            created_ms=int(fields["_c"]),
            last_seen_ms=int(fields["_s"]),
            expires_ms=int(fields["_e"]),
            csrf_token=fields.get("_x", ""),
            data={
                name.removeprefix(DATA_PREFIX): json.loads(value)
                for name, value in fields.items()
                if name.startswith(DATA_PREFIX)
            },
        )

    async def create(self, values: Mapping[str, Any]) -> Session:
        """A new anonymous session holding `values`, under an id the server chose."""
        flat = self._encode_data(values)
        cookie = self._new_cookie("a" + secrets.token_urlsafe(16)[:22])
        csrf_token = secrets.token_urlsafe(32)
        now = await self._run(
            CREATE,
            [self.session_key(cookie)],
            [self._idle_ms, self._max_age_ms, csrf_token, *flat],
        )
        return Session(
            cookie=cookie,
            user=None,
            created_ms=int(now),
            last_seen_ms=int(now),
            expires_ms=int(now) + self._max_age_ms,
            csrf_token=csrf_token,
            data=dict(values),
        )

    async def update(
        self, session: Session, values: Mapping[str, Any], remove: tuple[str, ...] = ()
    ) -> bool:
        """Write these fields (and delete those) only; False if the session is gone."""
        flat = self._encode_data(values)
        written = await self._run(
            WRITE,
            [self.session_key(session.cookie)],
            [len(flat) // 2, *flat, *(self._field(name) for name in remove)],
        )
        if written:
            session.data.update(values)
            for name in remove:
                session.data.pop(name, None)
        return bool(written)

    async def login(self, username: str, previous: Session | None, user_agent: str) -> Session:
        """A fresh authenticated session under a new id; the previous id dies at once.

        One round trip. On Redis Cluster, when the previous session was anonymous its key
        lives in another slot: it is then deleted by a second command sent concurrently.
        """
        tag = user_tag(username)
        cookie = self._new_cookie(tag)
        csrf_token = secrets.token_urlsafe(32)
        new_key = self.session_key(cookie)
        keys = [new_key, self._key(tag, "index"), self._key(tag, "meta")]
        previous_key = self.session_key(previous.cookie) if previous else None
        separate_delete = (
            previous_key is not None
            and isinstance(self._redis, RedisCluster)
            and key_slot(previous_key.encode()) != key_slot(new_key.encode())
        )
        if previous_key is not None and not separate_delete:
            keys.append(previous_key)
        carried = self._encode_data(previous.data) if previous else []
        previous_digest = previous.cookie.digest if previous and previous.user == username else ""
        args: list[Any] = [
            self._idle_ms,
            self._max_age_ms,
            cookie.digest,
            username,
            csrf_token,
            user_agent[:200],
            previous_digest,
            secrets.token_hex(8),
            *carried,
        ]
        if separate_delete and previous_key is not None:
            reply, _ = await asyncio.gather(
                self._run(LOGIN, keys, args), self._delete(previous_key)
            )
        else:
            reply = await self._run(LOGIN, keys, args)
        now = int(reply)
        return Session(
            cookie=cookie,
            user=username,
            created_ms=now,
            last_seen_ms=now,
            expires_ms=now + self._max_age_ms,
            csrf_token=csrf_token,
            data=dict(previous.data) if previous else {},
        )

    async def _delete(self, key: str) -> None:
        await self._call("delete", lambda: self._redis.unlink(key))

    async def logout(self, session: Session) -> None:
        tag = session.cookie.tag
        await self._run(
            LOGOUT,
            [self.session_key(session.cookie), self._key(tag, "index")],
            [session.cookie.digest],
        )

    async def logout_everywhere(self, username: str) -> None:
        tag = user_tag(username)
        await self._run(
            LOGOUT_ALL,
            [self._key(tag, "meta"), self._key(tag, "index")],
            [secrets.token_hex(8), self._max_age_ms],
        )
        for then in self.logged_out_everywhere:
            await then(username)

    async def active_sessions(self, current: Session) -> list[SessionInfo]:
        """The live sessions of the current session's user, newest first; no raw ids."""
        if current.user is None:
            return []
        tag = current.cookie.tag
        index = self._key(tag, "index")
        members = await self._call(
            "list", lambda: self._redis.zrevrange(index, 0, MAX_LISTED_SESSIONS - 1)
        )
        digests = [member.decode() for member in members if isinstance(member, bytes)]
        if not digests:
            return []
        reply = await self._run(
            LIST,
            [index, self._key(tag, "meta"), *(self._key(tag, digest) for digest in digests)],
            digests,
        )
        sessions = [
            SessionInfo(
                id=reply[i].decode()[:12],
                created_at=_ms_to_datetime(int(reply[i + 1])),
                last_seen_at=_ms_to_datetime(int(reply[i + 2])),
                user_agent=reply[i + 3].decode(errors="replace"),
                current=reply[i].decode() == current.cookie.digest,
            )
            for i in range(0, len(reply), 4)
        ]
        return sorted(sessions, key=lambda info: info.created_at, reverse=True)
