"""Real-time fan-out on the real Redis under test, with the app served by uvicorn and real
WebSocket and SSE clients over TCP."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import struct
import termios
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from socket import SO_RCVBUF, SOL_SOCKET
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.realtime.hub import Hub
from {{ cookiecutter.package_name }}.realtime.topics import Topic

from tests.realtime_clients import (
    Served,
{%- if cookiecutter.use_sessions %}
    Visitor,
{%- endif %}
    frames,
    served,
    sse,
    subscribe,
    subscribed_sockets,
    subscribers,
    take,
    until,
    visitor,
{%- if cookiecutter.use_sessions %}
    visitor_socket,
{%- endif %}
)
from tests.redis_servers import RedisServer
from tests.redis_target import RedisTarget
from tests.service import SettingsFactory

pytestmark = pytest.mark.anyio


@pytest.fixture
async def two_workers(realtime_settings: SettingsFactory) -> AsyncIterator[list[Served]]:
    """Two apps, like two worker processes: two hubs on one Redis, one key prefix."""
    settings = realtime_settings()
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(served(create_app(settings))) for _ in range(2)]


def hub_of(worker: Served) -> Hub:
    hub: Hub = worker.app.state.realtime
    return hub


async def drain(ws: ClientConnection) -> None:
    """Read until the server closes the connection (ConnectionClosed), at most 5 s."""
    async with asyncio.timeout(5):
        while True:
            await ws.recv()


async def kill_subscriber_connections(target: RedisTarget) -> None:
    """CLIENT KILL the service's subscriber connections (not the sentinels' own)."""
    for url in target.monitor_urls:
        async with Redis.from_url(url) as node:
            for client in await node.client_list(_type="pubsub"):
                if not client["name"].startswith("sentinel-"):
                    await node.client_kill_filter(_id=client["id"])


async def test_every_subscriber_on_every_worker_gets_every_message_in_order(
    two_workers: list[Served], redis_target: RedisTarget
) -> None:
    async with AsyncExitStack() as stack:
        sockets = []
        for worker in two_workers:
            user = await stack.enter_async_context(visitor(worker))
            for _ in range(3):
                ws = await stack.enter_async_context(user.websocket())
                await subscribe(ws, "news")
                sockets.append(ws)
        publisher = await stack.enter_async_context(visitor(two_workers[0]))
        sent = [await publisher.publish("news", {"n": n}) for n in range(50)]

        for ws in sockets:
            received = await frames(ws, 50)
            assert [frame["data"] for frame in received] == [{"n": n} for n in range(50)]
            assert [frame["id"] for frame in received] == sent
        channel = Topic.make(hub_of(two_workers[0]).prefix, "news").channel
        assert await subscribers(redis_target, channel) == 2  # one per worker


async def test_an_sse_client_gets_the_messages_with_their_positions_as_event_ids(
    two_workers: list[Served],
) -> None:
    worker = two_workers[1]
    async with visitor(worker) as user, sse(worker, "news", user.headers) as events:
        sent = [await user.publish("news", f"m{n}") for n in range(5)]

        received = await take(events, 5)

    assert [event["id"] for event in received] == sent
    assert [json.loads(event["data"])["data"] for event in received] == [f"m{n}" for n in range(5)]


async def test_a_client_resuming_from_a_position_gets_exactly_what_it_missed(
    two_workers: list[Served],
) -> None:
    worker = two_workers[0]
    async with visitor(worker) as user:
        sent = [await user.publish("resume", n) for n in range(10)]
        async with user.websocket() as ws:
            await subscribe(ws, "resume", since=sent[3])
            replayed = await frames(ws, 6)
            live = await user.publish("resume", 10)
            (after,) = await frames(ws, 1)

    assert [frame["id"] for frame in replayed] == sent[4:]
    assert after["id"] == live


async def test_sse_resumes_from_last_event_id(two_workers: list[Served]) -> None:
    worker = two_workers[0]
    async with visitor(worker) as user:
        sent = [await user.publish("sse-resume", n) for n in range(6)]
        headers = {**user.headers, "last-event-id": sent[2]}
        async with sse(worker, "sse-resume", headers) as events:
            replayed = await take(events, 3)

    assert [event["id"] for event in replayed] == sent[3:]


async def test_a_position_older_than_the_history_gets_one_resync(
    realtime_settings: SettingsFactory,
) -> None:
    app = create_app(realtime_settings(realtime_history_size=3))
    async with served(app) as worker, visitor(worker) as user:
        sent = [await user.publish("short", n) for n in range(6)]
        async with user.websocket() as ws:
            await subscribe(ws, "short", since=sent[0])
            (resync,) = await frames(ws, 1)
            live = await user.publish("short", 6)
            (after,) = await frames(ws, 1)

    assert resync == {"type": "resync", "topic": "short"}
    assert after["id"] == live


async def test_a_position_of_another_epoch_gets_a_resync(two_workers: list[Served]) -> None:
    async with visitor(two_workers[0]) as user, user.websocket() as ws:
        await user.publish("epochs", 1)

        await subscribe(ws, "epochs", since="deadbeef:1")

        (resync,) = await frames(ws, 1)

    assert resync == {"type": "resync", "topic": "epochs"}


async def test_the_hub_resubscribes_and_fills_the_gap_after_its_connection_is_killed(
    two_workers: list[Served], redis_target: RedisTarget
) -> None:
    worker = two_workers[0]
    hub = hub_of(worker)
    async with visitor(worker) as user, user.websocket() as ws:
        await subscribe(ws, "killed")
        sent = [await user.publish("killed", n) for n in range(3)]
        await kill_subscriber_connections(redis_target)
        sent += [await user.publish("killed", n) for n in range(3, 8)]  # while it reconnects

        received = await frames(ws, 8)
        await until(lambda: all(link.subscribed for link in hub.links.values()))

    assert [frame["id"] for frame in received] == sent


async def test_writes_lost_in_a_failover_give_a_resync_not_dropped_messages(
    two_workers: list[Served], redis_target: RedisTarget
) -> None:
    worker = two_workers[0]
    topic = Topic.make(hub_of(worker).prefix, "rewound")
    async with visitor(worker) as user, user.websocket() as ws:
        await subscribe(ws, "rewound")
        sent = [await user.publish("rewound", n) for n in range(5)]
        await frames(ws, 5)
        # As after a failover to a replica that had not received the last two messages.
        admin = redis_target.admin()
        try:
            entries = await admin.xrange(topic.stream_key, max="3-0")
            kept = cast(list[tuple[bytes, dict[Any, Any]]], entries)
            await admin.delete(topic.stream_key)
            for entry_id, fields in kept:
                await admin.xadd(topic.stream_key, fields, id=entry_id)
            await admin.hset(topic.meta_key, "offset", 3)
        finally:
            await admin.aclose()
        await kill_subscriber_connections(redis_target)  # the failover's disconnection

        (resync,) = await frames(ws, 1)
        again = await user.publish("rewound", "after")
        (after,) = await frames(ws, 1)

    assert resync == {"type": "resync", "topic": "rewound"}
    assert again == sent[3]  # a position the client had seen, now with other data
    assert after["id"] == again
    assert after["data"] == "after"


async def subscriber_connections(target: RedisTarget) -> int:
    """Subscriber connections to the masters (CLIENT LIST TYPE pubsub), but the sentinels'."""
    total = 0
    for url in target.monitor_urls:
        async with Redis.from_url(url) as node:
            clients = await node.client_list(_type="pubsub")
            total += sum(not client["name"].startswith("sentinel-") for client in clients)
    return total


def connects(hub: Hub) -> int:
    return sum(link.connects for link in hub.links.values())


def resubscribed(hubs: list[Hub], before: list[int]) -> Callable[[], bool]:
    """Whether every hub has connected again since `before`, and Redis confirmed it."""
    return lambda: all(
        connects(hub) > count and hub.problem() is None
        for hub, count in zip(hubs, before, strict=True)
    )


async def test_twenty_killed_subscriber_connections_are_each_replaced_within_2_s_and_none_leaks(
    two_workers: list[Served], redis_target: RedisTarget
) -> None:
    hubs = [hub_of(worker) for worker in two_workers]
    channel = Topic.make(hubs[0].prefix, "killed-often").channel
    async with AsyncExitStack() as stack:
        user = await stack.enter_async_context(visitor(two_workers[0]))
        sockets = await subscribed_sockets(stack, two_workers, user.headers, "killed-often")
        counts = []
        for _ in range(20):
            before = [connects(hub) for hub in hubs]
            await kill_subscriber_connections(redis_target)
            await until(resubscribed(hubs, before), within=2)
            async with asyncio.timeout(5):  # and Redis counts one subscriber per worker again
                while await subscribers(redis_target, channel) != 2:  # noqa: ASYNC110 - polling Redis
                    await asyncio.sleep(0.02)
            counts.append(await subscriber_connections(redis_target))
        position = await user.publish("killed-often", "still delivered")

        received = [await frames(ws, 1) for ws in sockets]

    # After the first kill (which also ends any other test's leftovers), the count holds.
    assert counts[1:] == [counts[0]] * 19  # each one replaced, none left behind
    assert [frame["id"] for (frame,) in received] == [position, position]


async def test_bad_frames_get_an_error_and_the_socket_stays_open(
    two_workers: list[Served],
) -> None:
    async with visitor(two_workers[0]) as user, user.websocket() as ws:
        bad = ["not json", b"binary", {"type": "shout"}, {"type": "subscribe", "topic": "UPPER"},
               {"type": "subscribe", "topic": "ok", "since": "yesterday"}]  # fmt: skip
        for frame in bad:
            await ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))
        errors = await frames(ws, 5)
        await subscribe(ws, "still-open")
        position = await user.publish("still-open", "yes")
        (message,) = await frames(ws, 1)

    assert [error["code"] for error in errors] == [
        "bad_frame", "bad_frame", "bad_frame", "bad_topic", "bad_position"
    ]  # fmt: skip
    assert message["id"] == position


async def test_a_foreign_origin_is_refused_before_accept(two_workers: list[Served]) -> None:
    async with visitor(two_workers[0]) as user:
        with pytest.raises(InvalidStatus) as refused:
            await user.websocket(origin="https://evil.example").__aenter__()

    assert refused.value.response.status_code == 403


def held_for(worker: Served, client: ClientConnection) -> Callable[[], int]:
    """Bytes the server holds for `client`, counted high: every outbox's queued text (frames
    share it with other clients), the server transport's buffer and the kernel's unsent bytes
    on the server's socket."""
    protocol = next(
        each
        for each in worker.server.server_state.connections
        if each.transport.get_extra_info("peername") == client.local_address
    )
    sock = protocol.transport.get_extra_info("socket")

    def held() -> int:
        queued = sum(outbox.size for outbox in hub_of(worker).connections)
        unsent = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        return queued + protocol.transport.get_write_buffer_size() + int(unsent)

    return held


async def test_a_client_that_stops_reading_is_closed_with_1013_within_2_s_holding_at_most_1_mib(
    realtime_settings: SettingsFactory,
) -> None:
    async with served(create_app(realtime_settings())) as worker, visitor(worker) as user:
        hub = hub_of(worker)
        topic = Topic.make(hub.prefix, "firehose")
        async with user.websocket() as slow, user.websocket() as fast:
            # A small receive buffer, as a phone's: unread data soon reaches the server.
            slow.transport.get_extra_info("socket").setsockopt(SOL_SOCKET, SO_RCVBUF, 32_768)
            for ws in (slow, fast):
                await subscribe(ws, "firehose")
            held = held_for(worker, slow)
            received = asyncio.ensure_future(frames(fast, 5_000, within=20))
            peak, sent, started = 0, 0, time.monotonic()
            # 1 KiB messages at 500 a second until the server lets `slow` go; `fast` keeps
            # reading. (Random text: were compression turned on, it would shrink repeats.)
            while len(hub.connections) == 2 and sent < 5_000:
                data = base64.b64encode(os.urandom(768)).decode()
                await hub.publish(topic, json.dumps(data))
                sent += 1
                peak = max(peak, held())
                await asyncio.sleep(max(0.0, started + sent / 500 - time.monotonic()))
            for _ in range(5_000 - sent):  # `fast` is owed 5,000
                await hub.publish(topic, '"more"')
            got = await received

            with pytest.raises(ConnectionClosed) as closed:
                await drain(slow)

    assert sent < 1_000  # within 2 s at 500 a second (counted, not timed: a busy machine
    # publishes more slowly, and what fills the buffers is the messages)
    assert peak <= 1_048_576
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    assert [int(frame["id"].split(":")[1]) for frame in got] == list(range(1, 5_001))


async def test_a_quiet_hub_probes_itself_and_stays_connected(two_workers: list[Served]) -> None:
    worker = two_workers[0]
    hub = hub_of(worker)
    async with visitor(worker) as user, user.websocket() as ws:
        await subscribe(ws, "quiet")
        links = list(hub.links.values())
        before = [link.connects for link in links]

        await asyncio.sleep(3.5)  # more than three probe intervals of silence

        assert [link.connects for link in links] == before
        assert hub.problem() is None
        position = await user.publish("quiet", "still there")
        (message,) = await frames(ws, 1)
    assert message["id"] == position


@pytest.mark.faults
async def test_a_redis_frozen_for_10_s_is_detected_by_the_probe_and_no_worker_stays_deaf(
    realtime_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = realtime_settings(redis_url=own_redis_server.url, redis_topology="standalone")
    async with AsyncExitStack() as stack:
        workers = [await stack.enter_async_context(served(create_app(settings))) for _ in range(2)]
        hubs = [hub_of(worker) for worker in workers]
        user = await stack.enter_async_context(visitor(workers[0]))
        sockets = await subscribed_sockets(stack, workers, user.headers, "frozen")
        sent = [await user.publish("frozen", n) for n in range(3)]
        own_redis_server.pause()  # SIGSTOP: the connections stay open, and silent
        frozen_at = time.monotonic()
        try:
            # Within two probe intervals (1 s each) every hub knows it is deaf, and says so.
            await until(lambda: all(hub.problem() for hub in hubs), within=2 * 1.0 + 0.5)
            ready = await user.http.get("/health/ready")
            await asyncio.sleep(max(0.0, frozen_at + 10 - time.monotonic()))
        finally:
            own_redis_server.resume()
        await until(lambda: not any(hub.problem() for hub in hubs), within=5)
        sent += [await user.publish("frozen", n) for n in range(3, 6)]

        received = [await frames(ws, 6) for ws in sockets]

    assert ready.status_code == 503
    for frames_of_one in received:
        assert [frame["id"] for frame in frames_of_one] == sent


async def test_readiness_says_503_while_the_hub_is_not_subscribed(
    realtime_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = realtime_settings(redis_url=own_redis_server.url, redis_topology="standalone")
    async with served(create_app(settings)) as worker, visitor(worker) as user:
        hub = hub_of(worker)
        await until(lambda: hub.problem() is None)
        assert (await user.http.get("/health/ready")).status_code == 200
        hub.links[""].ready.clear()  # as while it reconnects

        answer = await user.http.get("/health/ready")

    assert answer.status_code == 503
    assert answer.json()["error"]["message"] == "the realtime subscriber is not subscribed."
{%- if cookiecutter.use_sessions %}


async def test_a_websocket_without_a_logged_in_session_is_refused_before_accept(
    two_workers: list[Served],
) -> None:
    async with visitor(two_workers[0]) as user:
        user.headers = {}  # no session cookie
        with pytest.raises(InvalidStatus) as refused:
            await user.websocket().__aenter__()

    assert refused.value.response.status_code == 403


async def test_a_websocket_with_an_expired_session_is_refused_before_accept(
    realtime_settings: SettingsFactory,
) -> None:
    app = create_app(realtime_settings(session_idle_ttl_seconds=1))
    async with served(app) as worker, visitor(worker) as user:
        await asyncio.sleep(2.5)  # idle for longer than a session lives
        with pytest.raises(InvalidStatus) as refused:
            await user.websocket().__aenter__()

    assert refused.value.response.status_code == 403


async def test_a_notification_reaches_every_connection_of_its_user_and_no_one_else(
    two_workers: list[Served],
) -> None:
    async def notify(user: Visitor, data: str) -> None:
        answer = await user.http.post(
            "/realtime/notifications", json={"data": data}, headers=user.headers
        )
        assert answer.status_code == 202

    async with AsyncExitStack() as stack:
        ada = await stack.enter_async_context(visitor(two_workers[0]))
        bob = await stack.enter_async_context(visitor(two_workers[1]))
        ada_sockets = [await stack.enter_async_context(visitor_socket(worker, ada.headers))
                       for worker in two_workers]  # fmt: skip
        bob_socket = await stack.enter_async_context(bob.websocket())
        for ws in (*ada_sockets, bob_socket):
            await subscribe(ws, "me")

        await notify(ada, "for ada")
        await notify(bob, "for bob")
        await notify(ada, "ada again")

        for ws in ada_sockets:
            assert [(f["topic"], f["data"]) for f in await frames(ws, 2)] == [
                ("me", "for ada"), ("me", "ada again")
            ]  # fmt: skip
        assert [f["data"] for f in await frames(bob_socket, 1)] == ["for bob"]


async def test_logging_out_everywhere_closes_the_users_sockets_in_every_worker(
    two_workers: list[Served],
) -> None:
    async with AsyncExitStack() as stack:
        ada = await stack.enter_async_context(visitor(two_workers[0]))
        sockets = [await stack.enter_async_context(visitor_socket(worker, ada.headers))
                   for worker in two_workers]  # fmt: skip
        for ws in sockets:
            await subscribe(ws, "news")

        answer = await ada.http.post("/auth/logout-all", headers=ada.headers)
        assert answer.status_code == 204

        for ws in sockets:
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(1):
                    await drain(ws)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
{%- endif %}
