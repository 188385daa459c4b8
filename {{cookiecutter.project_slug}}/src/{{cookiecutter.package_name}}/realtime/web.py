"""Real-time on the web: a WebSocket and Server-Sent Events onto the hub, and publishing.

Who may connect is decided by the feature's `Identify` (main.py): with sessions, a logged-in
session; without, anyone. A WebSocket is also refused unless its `Origin` is one of
REALTIME_ALLOWED_ORIGINS: browsers send cookies with a cross-site WebSocket handshake, and
neither Starlette nor CORS middleware checks it. Both refusals come before `accept()`, so the
handshake gets 403.
"""

# No `from __future__ import annotations` here: the routes are made inside build_router, and
# FastAPI must see their annotations (which name its arguments) as objects, not strings.

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, WebSocket, status
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field, JsonValue
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect

from ..contract import errors
from ..errors import ServiceError
from ..redis_client import UNAVAILABLE_ERRORS
from .hub import Frame, Hub, Outbox, Subscription
from .topics import MY_NOTIFICATIONS, TOPIC, TOPIC_PATTERN, Position, Topic, notifications_of

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 65_536
MAX_CLIENT_FRAME_BYTES = 4096
MAX_TOPICS_PER_CONNECTION = 100
TRY_AGAIN_LATER = 1013  # WebSocket close code: the client fell behind; resume and retry
CLOSE_WAIT_SECONDS = 10

DEMO_PAGE = (resources.files(__package__ or __name__) / "demo.html").read_text("utf-8")


def _inline_hash(tag: str) -> str:
    """The CSP source of the page's one inline <tag> element: nothing else may run."""
    body = DEMO_PAGE.split(f"<{tag}>", 1)[1].split(f"</{tag}>", 1)[0]
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"


DEMO_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_inline_hash('script')}; "
        f"style-src {_inline_hash('style')}; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
}

# Who is connecting: a username, None for anyone (no sessions); raises to refuse.
Identify = Callable[[HTTPConnection], Awaitable[str | None]]


class Published(BaseModel):
    id: str


class NewMessage(BaseModel):
    data: JsonValue = Field(examples=[{"text": "hello"}])


TopicName = Annotated[str, Path(pattern=TOPIC_PATTERN, examples=["news"])]


def get_hub(connection: HTTPConnection) -> Hub:
    hub: Hub = connection.app.state.realtime
    return hub


def _topic(hub: Hub, name: str, user: str | None) -> Topic:
    if name == MY_NOTIFICATIONS:
        if user is None:
            raise ServiceError(403, "forbidden_topic", "`me` needs a logged-in user.")
        return notifications_of(hub.prefix, user)
    return Topic.make(hub.prefix, name)


def _data_text(data: JsonValue) -> str:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        limit = f"A message's data may take at most {MAX_MESSAGE_BYTES} bytes as JSON."
        raise ServiceError(413, "message_too_large", limit)
    return text


def build_router(
    identify: Identify, user_dependency: Callable[..., Any], *, notifications: bool
) -> APIRouter:
    """The routes, for this way of telling who connects (see main.py)."""
    router = APIRouter(prefix="/realtime", tags=["realtime"])
    User = Annotated[str | None, Depends(user_dependency)]  # noqa: N806 - a type

    @router.post(
        "/topics/{topic}/messages",
        status_code=status.HTTP_202_ACCEPTED,
        responses=errors(e403="`me` is published to with POST /realtime/notifications.",
                         e503="Nothing can be published now (Redis)."),
    )  # fmt: skip
    async def publish(
        topic: TopicName, message: NewMessage, request: Request, user: User
    ) -> Published:
        """Publish to everyone subscribed to the topic; kept in the topic's history."""
        if topic == MY_NOTIFICATIONS:
            raise ServiceError(403, "forbidden_topic", "Use POST /realtime/notifications.")
        hub = get_hub(request)
        position = await hub.publish(Topic.make(hub.prefix, topic), _data_text(message.data))
        return Published(id=str(position))

    if notifications:

        @router.post(
            "/notifications",
            status_code=status.HTTP_202_ACCEPTED,
            responses=errors(e503="Nothing can be published now (Redis)."),
        )
        async def notify(message: NewMessage, request: Request, user: User) -> Published:
            """Reach every open connection of the current user, on every device (topic `me`)."""
            hub = get_hub(request)
            topic = _topic(hub, MY_NOTIFICATIONS, user)
            return Published(id=str(await hub.publish(topic, _data_text(message.data))))

    @router.get(
        "/sse",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
            **errors(e403="`me` needs a logged-in user.",
                     e503="Nothing can be subscribed to now (Redis)."),
        },
    )  # fmt: skip
    async def sse(
        request: Request,
        user: User,
        topic: Annotated[str, Query(pattern=TOPIC_PATTERN, examples=["news"])],
        last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    ) -> StreamingResponse:
        """One topic as Server-Sent Events. Each event's `id` is its position; a browser
        that reconnects sends it back in `Last-Event-ID` and gets exactly what it missed
        (or a `resync` event). A comment line comes every 15 s when nothing else does."""
        hub = get_hub(request)
        outbox = hub.outbox()
        subscription = await hub.subscribe(
            outbox, _topic(hub, topic, user), Position.parse(last_event_id)
        )
        hub.connected(outbox, user)
        return StreamingResponse(
            _events(hub, outbox, subscription, user),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get("/demo", include_in_schema=False)
    async def demo() -> HTMLResponse:
        """A page that follows a topic over both transports and shows a live leaderboard."""
        return HTMLResponse(DEMO_PAGE, headers=DEMO_HEADERS)

    @router.websocket("/ws")
    async def websocket(websocket: WebSocket) -> None:
        """See the README for the frames."""
        hub = get_hub(websocket)
        if websocket.headers.get("origin") not in hub.settings.realtime_origins:
            await websocket.close(code=1008, reason="origin not allowed")  # 403 before accept
            return
        try:
            user = await identify(websocket)
        except ServiceError:
            await websocket.close(code=1008, reason="not logged in")  # 403 before accept
            return
        await websocket.accept()
        await _serve(websocket, hub, user)

    return router


async def _events(
    hub: Hub, outbox: Outbox, subscription: Subscription, user: str | None
) -> AsyncIterator[str]:
    heartbeat = hub.settings.realtime_sse_heartbeat_seconds
    try:
        while True:
            try:
                async with asyncio.timeout(heartbeat):
                    frame = await outbox.take()
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if frame is None:
                return  # too slow or closed: a browser reconnects with Last-Event-ID
            if frame.kind == "subscribed":
                continue  # the answer having begun says so
            if frame.position is None:
                yield f"event: {frame.kind}\ndata: {frame.text}\n\n"
            else:
                yield f"id: {frame.position}\nevent: {frame.kind}\ndata: {frame.text}\n\n"
    finally:
        hub.unsubscribe(subscription)
        hub.disconnected(outbox, user)


class _Connection:
    """One WebSocket: its topics, and the frames it sends."""

    def __init__(self, websocket: WebSocket, hub: Hub, user: str | None) -> None:
        self.websocket = websocket
        self.hub = hub
        self.user = user
        self.outbox = hub.outbox()
        self.subscriptions: dict[str, Subscription] = {}

    def error(self, code: str, message: str) -> None:
        text = json.dumps({"type": "error", "code": code, "message": message})
        self.outbox.offer(Frame("error", "", text))

    async def read(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            text = message.get("text")
            try:
                if text is None:
                    raise ServiceError(400, "bad_frame", "Frames are text (JSON), not binary.")
                await self.handle(text)
            except UNAVAILABLE_ERRORS:
                self.error("unavailable", "Redis is unavailable; try again.")
            except ServiceError as refused:
                self.error(refused.code, refused.message)

    async def handle(self, text: str) -> None:
        frame = _client_frame(text)
        name = frame["topic"]
        previous = self.subscriptions.pop(name, None)
        if previous is not None:
            self.hub.unsubscribe(previous)
        if frame["type"] == "unsubscribe":
            return
        if len(self.subscriptions) >= MAX_TOPICS_PER_CONNECTION:
            raise ServiceError(
                422, "too_many_topics", f"At most {MAX_TOPICS_PER_CONNECTION} topics at once."
            )
        topic = _topic(self.hub, name, self.user)
        since = frame.get("since")
        self.subscriptions[name] = await self.hub.subscribe(
            self.outbox, topic, Position.parse(since) if since else None
        )

    async def write(self) -> None:
        send_timeout = self.hub.settings.realtime_send_timeout_seconds
        while (frame := await self.outbox.take()) is not None:
            async with asyncio.timeout(send_timeout):
                await self.websocket.send_text(frame.text)
        if self.outbox.too_slow:
            raise _TooSlowError
        # Closed by the hub (logged out everywhere, shutdown).
        async with asyncio.timeout(send_timeout):
            await self.websocket.close(self.outbox.close_code, self.outbox.close_reason)

    def close(self) -> None:
        self.outbox.close()
        for subscription in self.subscriptions.values():
            self.hub.unsubscribe(subscription)
        self.subscriptions.clear()


class _TooSlowError(Exception):
    pass


def _client_frame(text: str) -> dict[str, Any]:
    """A valid subscribe or unsubscribe frame, or ServiceError saying what is wrong."""
    if len(text) > MAX_CLIENT_FRAME_BYTES:
        raise ServiceError(413, "frame_too_large", f"At most {MAX_CLIENT_FRAME_BYTES} bytes.")
    try:
        frame = json.loads(text)
    except ValueError:
        raise ServiceError(400, "bad_frame", "A frame is one JSON object.") from None
    if not isinstance(frame, dict) or frame.get("type") not in ("subscribe", "unsubscribe"):
        raise ServiceError(400, "bad_frame", 'A frame\'s "type" is "subscribe" or "unsubscribe".')
    topic = frame.get("topic")
    if not isinstance(topic, str) or not TOPIC.match(topic):
        raise ServiceError(400, "bad_topic", f"A topic matches {TOPIC_PATTERN}.")
    since = frame.get("since")
    if since is not None and (not isinstance(since, str) or Position.parse(since) is None):
        raise ServiceError(400, "bad_position", '"since" is "<epoch>:<offset>", as in "id".')
    return frame


async def _serve(websocket: WebSocket, hub: Hub, user: str | None) -> None:
    connection = _Connection(websocket, hub, user)
    hub.connected(connection.outbox, user)
    reader = asyncio.ensure_future(connection.read())
    writer = asyncio.ensure_future(connection.write())
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        reader.cancel()
        writer.cancel()
        hub.disconnected(connection.outbox, user)
        connection.close()  # nothing more is queued for it from here on
    failed = next(iter(done)).exception()
    if isinstance(failed, _TooSlowError | TimeoutError):
        # The close frame waits behind what the client has not read yet; a client that
        # reads nothing more is cut off when the wait ends.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                await websocket.close(code=TRY_AGAIN_LATER, reason="too slow")
    elif failed is not None and not isinstance(failed, WebSocketDisconnect):
        logger.warning("realtime connection failed: %r", failed)


async def anyone(connection: HTTPConnection) -> None:
    """Without sessions, anyone who passes the Origin check may connect."""
