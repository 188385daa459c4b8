"""Sessions on the web: the request's session context (cookie, CSRF, rotation) and the route
dependencies that hand it out."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import RouteContext
from starlette.datastructures import State
from starlette.requests import HTTPConnection

from ..contract import Document, add_headers, add_response, error_doc
from ..errors import ServiceError
from ..features import NOTHING, Call, Outcome, RouteStep, identifies_caller, uses_dependency
from ..settings import Settings
from .store import Session, SessionCookie, SessionInfo, SessionStore

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class SessionContext:
    """The request's session: loaded once, created on first write, rotated on login,
    ended on logout; keeps the cookie on the response in step with it.

    If a route returns a Response object itself, FastAPI does not merge the cookie set
    here into it: return data (or copy the Set-Cookie header) from such routes.
    """

    def __init__(
        self, store: SessionStore, settings: Settings, response: Response, session: Session | None
    ) -> None:
        self._store = store
        self._settings = settings
        self._response = response
        self.session = session

    @property
    def user(self) -> str | None:
        return self.session.user if self.session else None

    @property
    def username(self) -> str:
        """The logged-in user (401 if there is none)."""
        if self.session is None or self.session.user is None:
            raise ServiceError(401, "not_authenticated", "Log in first.")
        return self.session.user

    @property
    def data(self) -> dict[str, Any]:
        """The session's fields (empty without a session)."""
        return self.session.data if self.session else {}

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    async def set(self, values: Mapping[str, Any]) -> None:
        """Write these fields (only these). Creates an anonymous session if there is none."""
        if self.session is not None and await self._store.update(self.session, values):
            return
        self.session = await self._store.create(
            {**(self.session.data if self.session else {}), **values}
        )
        self._set_cookie(self.session)

    async def remove(self, *names: str) -> None:
        if self.session is not None:
            await self._store.update(self.session, {}, names)

    async def login(self, username: str, user_agent: str) -> Session:
        self.session = await self._store.login(username, self.session, user_agent)
        self._set_cookie(self.session)
        return self.session

    async def logout(self) -> None:
        if self.session is not None:
            await self._store.logout(self.session)
        self.session = None
        self._clear_cookie()

    async def logout_everywhere(self) -> None:
        if self.session is not None and self.session.user is not None:
            await self._store.logout_everywhere(self.session.user)
        self.session = None
        self._clear_cookie()

    async def active_sessions(self) -> list[SessionInfo]:
        if self.session is None or self.session.user is None:
            return []
        return await self._store.active_sessions(self.session)

    def _forget_cookie_headers(self) -> None:
        """Drop Set-Cookie headers for our cookie written earlier in this request: the
        browser should see one instruction, the last."""
        name = self._settings.session_cookie_key.encode() + b"="
        self._response.raw_headers[:] = [
            (key, value)
            for key, value in self._response.raw_headers
            if not (key == b"set-cookie" and value.startswith(name))
        ]

    def _set_cookie(self, session: Session) -> None:
        self._forget_cookie_headers()
        self._response.set_cookie(
            self._settings.session_cookie_key,
            session.cookie.value,
            max_age=int(self._settings.session_max_age_seconds),
            path="/",
            secure=self._settings.session_cookie_is_secure,
            httponly=True,
            samesite=self._settings.session_cookie_samesite,
        )

    def _clear_cookie(self) -> None:
        self._forget_cookie_headers()
        self._response.delete_cookie(
            self._settings.session_cookie_key,
            path="/",
            secure=self._settings.session_cookie_is_secure,
            httponly=True,
            samesite=self._settings.session_cookie_samesite,
        )


def user_from_cookie(request: Request) -> str | None:
    """Whom this request's session cookie was issued to (signature checked, no Redis call):
    how other layers, such as the rate limiter, tell users apart."""
    settings: Settings = request.app.state.settings
    store = get_session_store(request)
    return store.verified_user_tag(request.cookies.get(settings.session_cookie_key))


def get_session_store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.sessions
    return store


# Where the request path leaves the reply of the session read it made before routing.
READ_KEY = "session_read"


async def _session_context(request: Request, response: Response) -> SessionContext:
    """The request's session: read before routing with the other features' Redis work
    (none without a cookie), or here if the request path did not."""
    settings: Settings = request.app.state.settings
    store = get_session_store(request)
    cookie_value = request.cookies.get(settings.session_cookie_key)
    state: dict[str, Any] = request.scope.get("state", {})
    if READ_KEY in state:
        cookie, reply = state[READ_KEY]
        session = store.session_from(cookie, reply)
    else:
        session = await store.load(cookie_value)
    # Session data and tokens are for this client only: no cache may keep them.
    response.headers["cache-control"] = "no-store"
    context = SessionContext(store, settings, response, session)
    if cookie_value and session is None:
        context._clear_cookie()  # unknown, expired or forged: tell the browser to drop it
    return context


def _check_csrf(request: Request, context: SessionContext) -> None:
    """Refuse a state-changing request that a logged-in session's cookie authenticates
    unless it carries that session's CSRF token in X-CSRF-Token."""
    session = context.session
    if request.method not in SAFE_METHODS and session is not None and session.is_authenticated:
        sent = request.headers.get("x-csrf-token", "")
        if not sent or not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise ServiceError(403, "csrf_failed", "Missing or wrong X-CSRF-Token header.")


# The route dependencies are one level deep each: FastAPI resolves nested dependencies one
# by one, and the session is on the path of every request that has one.


@identifies_caller
async def load_session(request: Request, response: Response) -> SessionContext:
    """The session as it is, without the CSRF check."""
    return await _session_context(request, response)


@identifies_caller
async def load_session_checking_csrf(request: Request, response: Response) -> SessionContext:
    """The session, with the CSRF check on state-changing requests."""
    context = await _session_context(request, response)
    _check_csrf(request, context)
    return context


@identifies_caller
async def require_user(request: Request, response: Response) -> SessionContext:
    """A logged-in session (else 401), with the CSRF check on state-changing requests."""
    context = await _session_context(request, response)
    _check_csrf(request, context)
    _ = context.username  # 401 unless logged in
    return context


SESSION_LOADERS = (load_session, load_session_checking_csrf, require_user)


async def current_user(session: Annotated[SessionContext, Depends(require_user)]) -> str:
    """The logged-in user's name (else 401), with the CSRF check on state-changing requests."""
    return session.username


async def websocket_user(connection: HTTPConnection) -> str:
    """Who opened this connection (a WebSocket handshake): the logged-in user of its session
    cookie, else ServiceError (401, or 503 when Redis cannot say)."""
    settings: Settings = connection.app.state.settings
    store: SessionStore = connection.app.state.sessions
    session = await store.load(connection.cookies.get(settings.session_cookie_key))
    if session is None or session.user is None:
        raise ServiceError(401, "not_authenticated", "Log in first.")
    return session.user


def session_step(state: State, route: RouteContext) -> RouteStep | None:
    """The sessions' part of the request path: read the session before routing, for every
    route that loads it and every request that brings a well-formed cookie."""
    if not any(_uses(route, loader) for loader in SESSION_LOADERS):
        return None
    store: SessionStore = state.sessions
    cookie_name: str = state.settings.session_cookie_key

    def step(request: Request) -> Call | None:
        cookie = SessionCookie.parse(request.cookies.get(cookie_name))
        if cookie is None:
            return None

        def keep(reply: Any) -> Outcome:
            request.scope.setdefault("state", {})[READ_KEY] = (cookie, reply)
            return NOTHING

        return store.read_call(cookie, keep)

    return step


SESSION_RESPONSE_HEADERS = {
    "Cache-Control": "no-store: session data and tokens are for this client only",
    "Set-Cookie": "the session cookie, when the session changes or ends",
}


def _uses(route: RouteContext, loader: Callable[..., Any]) -> bool:
    return uses_dependency(route, lambda call: call is loader)


def sessions_document(settings: Settings) -> Document:
    """The sessions' part of the contract: on every operation that loads the session, 503
    (sessions unavailable), the security schemes, and 401 and 403 where they apply."""

    def document(
        route: RouteContext, method: str, operation: dict[str, Any], components: dict[str, Any]
    ) -> None:
        loaders = [loader for loader in SESSION_LOADERS if _uses(route, loader)]
        if not loaders:
            return
        schemes = components.setdefault("securitySchemes", {})
        cookie = settings.session_cookie_key
        schemes["sessionCookie"] = {"type": "apiKey", "in": "cookie", "name": cookie}
        schemes["csrfToken"] = {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"}
        add_headers(operation, SESSION_RESPONSE_HEADERS)
        unavailable = "Sessions are unavailable right now (Redis)."
        add_response(operation, 503, error_doc(unavailable, {"Retry-After": "seconds"}))
        checks_csrf = method not in SAFE_METHODS and load_session not in loaders
        if require_user in loaders:
            add_response(operation, 401, error_doc("Not logged in."))
            needed: dict[str, list[str]] = {"sessionCookie": []}
            if checks_csrf:
                needed["csrfToken"] = []
            operation["security"] = [needed]
        if checks_csrf:
            add_response(operation, 403, error_doc("Missing or wrong X-CSRF-Token header."))

    return document


# Any session (CSRF enforced on unsafe methods when logged in).
SessionDep = Annotated[SessionContext, Depends(load_session_checking_csrf)]
# A logged-in session, else 401 (CSRF enforced on unsafe methods).
UserSessionDep = Annotated[SessionContext, Depends(require_user)]
# The session as it is, without the CSRF check: for login, which replaces it anyway.
LoginSessionDep = Annotated[SessionContext, Depends(load_session)]
# The store itself, for routes that keep their own data beside the sessions.
SessionStoreDep = Annotated[SessionStore, Depends(get_session_store)]
