"""Demo of sessions: accounts, login with id rotation, logout, "log out everywhere".

Accounts live in Redis next to their user's sessions. Passwords are hashed with scrypt
(standard library) in a worker thread, so hashing does not stall the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Body, Request, status
from pydantic import BaseModel, Field, JsonValue, StringConstraints

from ..contract import errors
from ..errors import ServiceError
from ..redis_client import RedisDep
from ..scripts import b64url, b64url_decode
from ..sessions.web import LoginSessionDep, SessionDep, SessionStoreDep, UserSessionDep
from ..settings import SettingsDep

router = APIRouter(prefix="/auth", tags=["auth"])

Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        min_length=3,
        max_length=32,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    ),
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
MAX_FIELD_BYTES = 4096
SCRYPT_R, SCRYPT_P = 8, 1


class Credentials(BaseModel):
    username: Username = Field(examples=["alice"])
    password: Password = Field(repr=False, examples=["correct horse battery"])


class LoginResult(BaseModel):
    username: str
    csrf_token: str


class Me(BaseModel):
    username: str


class ActiveSession(BaseModel):
    id: str = Field(description="A short, non-secret label; not the session id")
    created_at: datetime
    last_seen_at: datetime
    user_agent: str
    current: bool


def hash_password(password: str, cost: int) -> str:
    salt = secrets.token_bytes(16)
    derived = hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=2**cost,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=2 ** (cost + 11),
        dklen=32,
    )
    return f"scrypt${cost}${b64url(salt)}${b64url(derived)}"


def verify_password(password: str, stored: str) -> bool:
    _, cost, salt, expected = stored.split("$")
    derived = hashlib.scrypt(
        password.encode(),
        salt=b64url_decode(salt),
        n=2 ** int(cost),
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=2 ** (int(cost) + 11),
        dklen=32,
    )
    return hmac.compare_digest(derived, b64url_decode(expected))


def _unknown_user_hash(cost: int) -> str:
    """Same cost as a real hash, matching nothing: unknown users take as long as known ones."""
    return f"scrypt${cost}${b64url(bytes(16))}${b64url(secrets.token_bytes(32))}"


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    responses=errors(e409="That username is taken.", e503="Accounts are unavailable (Redis)."),
)
async def register(
    credentials: Credentials, redis: RedisDep, store: SessionStoreDep, settings: SettingsDep
) -> Me:
    password_hash = await to_thread.run_sync(
        hash_password, credentials.password, settings.password_hash_cost
    )
    account = {"username": credentials.username, "password": password_hash,
               "created_at": datetime.now(UTC).isoformat()}  # fmt: skip
    created = await redis.set(store.account_key(credentials.username), json.dumps(account), nx=True)
    if not created:
        raise ServiceError(409, "username_taken", "That username is already registered.")
    return Me(username=credentials.username)


@router.post(
    "/login",
    responses=errors(e401="Wrong username or password.", e503="Accounts are unavailable (Redis)."),
)
async def login(
    credentials: Credentials,
    request: Request,
    session: LoginSessionDep,
    redis: RedisDep,
    store: SessionStoreDep,
    settings: SettingsDep,
) -> LoginResult:
    """Check the password, then start a session under a new id (the old id dies)."""
    stored = await redis.get(store.account_key(credentials.username))
    account: dict[str, Any] = json.loads(stored) if stored else {}
    password_hash = account.get("password") or _unknown_user_hash(settings.password_hash_cost)
    valid = await to_thread.run_sync(verify_password, credentials.password, password_hash)
    if not (valid and account):
        raise ServiceError(401, "invalid_credentials", "Wrong username or password.")
    new = await session.login(credentials.username, request.headers.get("user-agent", ""))
    return LoginResult(username=credentials.username, csrf_token=new.csrf_token)


@router.get("/me")
async def me(session: UserSessionDep) -> Me:
    return Me(username=session.username)


@router.get("/sessions")
async def sessions(session: UserSessionDep) -> list[ActiveSession]:
    """The user's live sessions; ids of other sessions are never shown."""
    return [
        ActiveSession(
            id=info.id,
            created_at=info.created_at,
            last_seen_at=info.last_seen_at,
            user_agent=info.user_agent,
            current=info.current,
        )
        for info in await session.active_sessions()
    ]


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(session: UserSessionDep) -> None:
    await session.logout()


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT)
async def logout_all(session: UserSessionDep) -> None:
    await session.logout_everywhere()


@router.get("/preferences")
async def get_preferences(session: SessionDep) -> dict[str, JsonValue]:
    """Whatever this browser's session holds, logged in or not."""
    return dict(session.data)


@router.patch("/preferences")
async def update_preferences(
    changes: Annotated[
        dict[FieldName, JsonValue],
        Body(
            min_length=1,
            max_length=20,
            examples=[{"theme": "dark"}],
            # Field names must match the pattern: no other names are accepted.
            json_schema_extra={"additionalProperties": False},
        ),
    ],
    session: SessionDep,
) -> dict[str, JsonValue]:
    """Merge these fields into the session (creating an anonymous one if needed).
    Only the given fields are written, so concurrent changes to others are kept."""
    too_large = [
        name for name, value in changes.items() if len(json.dumps(value)) > MAX_FIELD_BYTES
    ]
    if too_large:
        raise ServiceError(
            422, "value_too_large", f"Each value may take at most {MAX_FIELD_BYTES} bytes as JSON.",
            details={"fields": too_large},
        )  # fmt: skip
    await session.set(changes)
    return dict(session.data)
