"""One hub per worker process: the process's Redis subscriptions, shared by all of its
WebSocket and SSE connections.

* One subscriber connection (on a Cluster, one per node that holds a subscribed topic), one
  channel per topic, subscribed while at least one local connection wants the topic.
* A supervisor: whatever ends a subscriber connection, it reconnects with jittered backoff,
  subscribes again and fills each topic's gap from the topic's history, so no connection
  sees a gap. It never stops while the app runs.
* A liveness probe: a subscriber that has heard nothing for REALTIME_PROBE_SECONDS publishes
  to its own probe channel and reconnects unless that comes back in time (a frozen Redis,
  or a master demoted by a failover, keeps the connection open and silent).
* Each connection has a bounded outbox drained by its own writer; the hub never waits for a
  socket. A connection whose outbox is full is closed (see `Outbox`).
* Signals for the metrics: `realtime_connections` (open here), `realtime_subscribed` (1 while
  every subscriber connection is subscribed) and `realtime_subscriber_connect` (each attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from ..redis_client import RedisClient
from ..scripts import LuaScript, hash_tagged
from ..settings import Settings
from ..signals import UNHEARD, Signals
from .topics import Position, Topic

logger = logging.getLogger(__name__)

PUBLISH = LuaScript(__package__, "publish.lua")
HISTORY = LuaScript(__package__, "history.lua")
# Past every offset: asks the history script for the topic's state and no entries.
NOW = 2**62
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0
GOING_AWAY, POLICY_VIOLATION = 1001, 1008  # WebSocket close codes


@dataclass(frozen=True, slots=True)
class Frame:
    """One thing to send: a message (with its position) or a resync notice."""

    kind: str  # "message", "resync", "subscribed" or "error"
    topic: str
    text: str
    position: Position | None = None


class Outbox:
    """A connection's queue: at most `max_messages` frames and `max_bytes` of text. Offering
    more marks the connection as too slow; its writer then closes it (the client resumes
    from its last position without loss)."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.frames: deque[Frame] = deque()
        self.size = 0
        self.too_slow = False
        self.closed = False
        self.close_code, self.close_reason = 1000, ""
        self._ready = asyncio.Event()

    def offer(self, frame: Frame) -> None:
        if self.too_slow or self.closed:
            return
        if len(self.frames) >= self.max_messages or self.size + len(frame.text) > self.max_bytes:
            self.too_slow = True
            self.frames.clear()
            self.size = 0
        else:
            self.frames.append(frame)
            self.size += len(frame.text)
        self._ready.set()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """No more frames; the connection is to be closed with this WebSocket code."""
        if not self.closed:
            self.closed = True
            self.close_code, self.close_reason = code, reason
        self._ready.set()

    async def take(self) -> Frame | None:
        """The next frame; None once the connection is too slow or closed."""
        while not self.frames:
            if self.too_slow or self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        if self.too_slow:
            return None
        frame = self.frames.popleft()
        self.size -= len(frame.text)
        return frame


@dataclass(eq=False)
class Subscription:
    """One connection's interest in one topic, and how far that connection has got."""

    outbox: Outbox
    topic: Topic
    epoch: str | None = None
    delivered: int = 0
    catching_up: bool = True
    pending: list[tuple[Position, str]] = field(default_factory=list)

    def receive(self, position: Position, frame: str) -> None:
        if self.catching_up:
            self.pending.append((position, frame))
            return
        if self.epoch is not None and position.epoch != self.epoch:
            self.resync()
        self.epoch = position.epoch
        if position.offset > self.delivered:
            self.delivered = position.offset
            self.outbox.offer(Frame("message", self.topic.shown, frame, position))

    def resync(self) -> None:
        """The history no longer reaches back to this connection's position."""
        text = json.dumps({"type": "resync", "topic": self.topic.shown})
        self.outbox.offer(Frame("resync", self.topic.shown, text))
        self.delivered = 0

    def caught_up(self) -> None:
        self.catching_up = False
        pending, self.pending = self.pending, []
        for position, frame in pending:
            self.receive(position, frame)


@dataclass(eq=False)
class TopicState:
    """A topic the hub is subscribed to: the last position it passed on, and its members."""

    topic: Topic
    link: Link
    epoch: str | None = None
    offset: int = 0
    members: set[Subscription] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class History:
    epoch: str
    last: int
    oldest: int
    entries: list[tuple[int, str]]

    @classmethod
    def from_reply(cls, reply: Any) -> History | None:
        if not reply:
            return None
        epoch, last, oldest, entries = reply
        return cls(as_text(epoch), int(last), int(oldest),
                   [(int(offset), as_text(frame)) for offset, frame in entries])  # fmt: skip


def as_text(value: str | bytes) -> str:
    """A reply's bytes as text (clients made with or without decode_responses)."""
    return value.decode() if isinstance(value, bytes) else value


class ProbeLostError(Exception):
    """The subscriber did not hear its own probe: it is deaf, whatever its socket says."""


class Link:
    """One subscriber connection and the channels it carries. On a Cluster there is one per
    node; elsewhere one per hub."""

    def __init__(
        self, hub: Hub, name: str, client: RedisClient | Redis, probe_channel: str
    ) -> None:
        self.hub = hub
        self.name = name
        self.client = client
        self.probe_channel = probe_channel
        self.carries_control = False  # the hubs' control channel (see Hub.disconnect_user)
        self.connects = 0
        self.channels: dict[str, TopicState] = {}
        self.pubsub: PubSub | None = None
        self.heard_at = time.monotonic()
        self.probe_sent_at: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.acks: dict[str, asyncio.Future[None]] = {}
        self.ready = asyncio.Event()  # set once subscribed, cleared while not
        self.settled = asyncio.Event()  # set once the first attempt succeeded or failed

    @property
    def subscribed(self) -> bool:
        return self.ready.is_set()

    @property
    def _verbs(self) -> tuple[str, str]:
        return ("SSUBSCRIBE", "SUNSUBSCRIBE") if self.hub.sharded else ("SUBSCRIBE", "UNSUBSCRIBE")

    async def add(self, state: TopicState) -> None:
        """Carry the topic's channel; once Redis confirms it (when connected), return."""
        channel = state.topic.channel
        self.channels[channel] = state
        if self.pubsub is None:
            return  # subscribed with the others when the connection is back
        acknowledged = asyncio.get_running_loop().create_future()
        self.acks[channel] = acknowledged
        try:
            await self.pubsub.execute_command(self._verbs[0], channel)
            async with asyncio.timeout(self.hub.settings.realtime_probe_seconds):
                await asyncio.shield(acknowledged)
        except (TimeoutError, RedisError, OSError):
            pass  # a broken link: its reader reconnects it with every channel, and fills gaps
        finally:
            self.acks.pop(channel, None)

    async def _rehomed(self) -> bool:
        """On a Cluster: after a failure, whether this link still has channels to carry."""
        try:
            if await self.hub.rehome(self):
                return True
        except Exception:  # the cluster is still failing over: try again next time
            logger.debug("moving realtime channels failed", exc_info=True)
            return True
        if isinstance(self.client, Redis) and self.client is not self.hub.redis:
            await self.client.aclose()
        return False

    async def add_control(self) -> None:
        self.carries_control = True
        if self.pubsub is not None:
            with contextlib.suppress(RedisError, OSError):  # else subscribed on reconnect
                await self.pubsub.execute_command(self._verbs[0], self.hub.control_channel)

    def drop(self, state: TopicState) -> None:
        if self.channels.get(state.topic.channel) is state:
            del self.channels[state.topic.channel]

    async def unsubscribe_unless_used(self, channel: str) -> None:
        if channel in self.channels or self.pubsub is None:
            return  # wanted again already, or not connected
        with contextlib.suppress(RedisError, OSError):  # a broken link drops it anyway
            await self.pubsub.execute_command(self._verbs[1], channel)

    async def run(self) -> None:
        """Subscribe, read, and on any failure start again: until the app stops."""
        backoff = BACKOFF_FIRST
        while True:
            try:
                await self._connect()
                backoff = BACKOFF_FIRST
                await self._read(until_subscribed=True)
                # Listening again: now fetch what was published while the hub was not.
                await self.hub.fill_gaps(self.channels.values())
                await self._read()
            except asyncio.CancelledError:
                await self._disconnect()
                raise
            except Exception as error:  # whatever it is: reconnect
                logger.warning("realtime subscriber lost (%r); reconnecting", error)
                self.settled.set()
            await self._disconnect()
            if self.hub.sharded and not await self._rehomed():
                return  # its channels live on other nodes now
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))  # noqa: S311 - jitter
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _connect(self) -> None:
        self.connects += 1
        self.hub.signals.count("realtime_subscriber_connect")
        self.pubsub = self.client.pubsub()
        control = [self.hub.control_channel] if self.carries_control else []
        channels = [self.probe_channel, *control, *self.channels]
        if self.hub.sharded:  # one slot per SSUBSCRIBE
            for channel in channels:
                await self.pubsub.execute_command(self._verbs[0], channel)
        else:
            await self.pubsub.execute_command(self._verbs[0], *channels)
        # Confirmed when Redis acknowledges the probe channel, the first of them (see _read).
        self.heard_at = time.monotonic()
        self.probe_sent_at = None

    async def _disconnect(self) -> None:
        self.ready.clear()
        self.hub.signal_subscribed()
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            except Exception:  # closing a broken connection
                logger.debug("closing the realtime subscriber failed", exc_info=True)

    async def _read(self, *, until_subscribed: bool = False) -> None:
        """Read and pass on messages, probing when silent; raise when the link is lost.
        With `until_subscribed`, return once Redis has confirmed the subscriptions."""
        pubsub = self.pubsub
        if pubsub is None:
            return
        probe_seconds = self.hub.settings.realtime_probe_seconds
        while not (until_subscribed and self.subscribed):
            message = await pubsub.parse_response(block=False, timeout=min(1.0, probe_seconds))
            now = time.monotonic()
            if message is not None:
                self.heard_at = now
                self.probe_sent_at = None
                await self._handle(message)
            elif self.probe_sent_at is not None:
                if now - self.probe_sent_at > probe_seconds:
                    raise ProbeLostError(f"no probe back within {probe_seconds} s")
            elif now - self.heard_at > probe_seconds:
                self.probe_sent_at = now
                await self.hub.send_probe(self.probe_channel)

    async def _handle(self, message: list[Any]) -> None:
        kind = as_text(message[0]).lower()
        if kind in ("subscribe", "ssubscribe"):
            channel = as_text(message[1])
            if channel == self.probe_channel:
                self.ready.set()
                self.hub.signal_subscribed()
                self.settled.set()
            acknowledged = self.acks.get(channel)
            if acknowledged is not None and not acknowledged.done():
                acknowledged.set_result(None)
            return
        if kind not in ("message", "smessage"):
            return
        channel = as_text(message[1])
        if channel == self.hub.control_channel:
            self.hub.on_control(as_text(message[2]))
            return
        state = self.channels.get(channel)
        if state is None:
            return  # the probe, or a topic just left
        header, _, frame = as_text(message[2]).partition("\n")
        position = Position.parse(header)
        if position is not None:
            await self.hub.deliver(state, position, frame)


class Hub:
    def __init__(self, redis: RedisClient, settings: Settings, signals: Signals = UNHEARD) -> None:
        self.redis = redis
        self.signals = signals
        self.settings = settings
        self.prefix = settings.redis_key_prefix
        self.sharded = isinstance(redis, RedisCluster)
        self.topics: dict[str, TopicState] = {}
        self.links: dict[str, Link] = {}
        self.name = secrets.token_hex(6)
        # Every open connection's outbox, to close them all at once (shutdown), and those of
        # each logged-in user (log out everywhere).
        self.connections: set[Outbox] = set()
        self.users: dict[str, set[Outbox]] = {}
        self.control_channel = hash_tagged(self.prefix, "rt-control", "live")
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening, and wait for the subscriber's first attempt (at most
        REALTIME_PROBE_SECONDS): the app is ready when its startup ends, and a Redis that
        refuses does not hold the startup up (readiness says 503 until it is back)."""
        if self.sharded:
            link = self._node_link(self.control_channel)
        else:
            link = self._start_link("", self.redis)
        link.carries_control = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.realtime_probe_seconds):
                await link.settled.wait()

    async def stop(self) -> None:
        for outbox in list(self.connections):
            outbox.close(GOING_AWAY, "the server is shutting down")
        for link in self.links.values():
            if link.task is not None:
                link.task.cancel()
        await asyncio.gather(
            *(link.task for link in self.links.values() if link.task), return_exceptions=True
        )
        for link in self.links.values():
            if isinstance(link.client, Redis) and link.client is not self.redis:
                await link.client.aclose()

    def _start_link(self, name: str, client: RedisClient | Redis) -> Link:
        if self.sharded:
            probe = self._probe_channel_on(name)
        else:
            probe = hash_tagged(self.prefix, f"rt-probe:{self.name}", "live")
        link = Link(self, name, client, probe)
        self.links[name] = link
        link.task = asyncio.get_running_loop().create_task(link.run())
        return link

    def _link_for(self, topic: Topic) -> Link:
        return self._node_link(topic.channel) if self.sharded else self.links[""]

    def _node_link(self, channel: str) -> Link:
        """On a Cluster: the link to the node that serves `channel` (made if need be)."""
        node = cast(RedisCluster, self.redis).get_node_from_key(channel)
        if node is None:
            raise RedisClusterException(f"no node serves {channel}")
        link = self.links.get(node.name)
        if link is None:
            # A connection of its own, made the way the cluster client makes its connections.
            pool = ConnectionPool(
                connection_class=node.connection_class, max_connections=2, **node.connection_kwargs
            )
            client = Redis(connection_pool=pool)
            link = self._start_link(node.name, client)
        return link

    async def rehome(self, link: Link) -> bool:
        """On a Cluster, after `link` failed: move its channels to the nodes that serve them
        now (a failover promotes a replica). False when nothing is left on `link`."""
        cluster = cast(RedisCluster, self.redis)
        await cluster.nodes_manager.initialize()  # the slot map as it is now
        for state in list(link.channels.values()):
            owner = self._node_link(state.topic.channel)
            if owner is not link:
                link.drop(state)
                state.link = owner
                await owner.add(state)
                await self._fill(state)
        if link.carries_control:
            owner = self._node_link(self.control_channel)
            if owner is not link:
                link.carries_control = False
                await owner.add_control()
        if link.channels or link.carries_control:
            return True
        if self.links.get(link.name) is link:
            del self.links[link.name]
        return False

    def _probe_channel_on(self, node_name: str) -> str:
        """A probe channel of this hub in a slot that node `node_name` serves."""
        cluster = cast(RedisCluster, self.redis)
        for n in range(100_000):
            channel = hash_tagged(self.prefix, f"rt-probe:{self.name}:{n}", "live")
            node = cluster.get_node_from_key(channel)
            if node is not None and node.name == node_name:
                return channel
        raise RedisClusterException(f"no slot of {node_name} found for a probe channel")

    def signal_subscribed(self) -> None:
        subscribed = all(link.subscribed for link in self.links.values())
        self.signals.level("realtime_subscribed", 1 if subscribed else 0)

    def problem(self) -> str | None:
        """Why the hub cannot deliver right now (for /health/ready), or None."""
        for link in self.links.values():
            if not link.subscribed:
                return "the realtime subscriber is not subscribed"
            waited = link.probe_sent_at and time.monotonic() - link.probe_sent_at
            if waited and waited > self.settings.realtime_probe_seconds:
                return "the realtime subscriber did not hear its probe"
        return None

    # -- Redis calls -------------------------------------------------------------------

    async def publish(self, topic: Topic, data: str) -> Position:
        """Append `data` (JSON text) to the topic's history and publish it: one script."""
        settings = self.settings
        args: list[str | int | float | bytes] = [
            topic.channel, topic.shown, data,
            settings.realtime_history_size, settings.realtime_history_ttl_seconds,
            secrets.token_hex(4), "1" if self.sharded else "0",
        ]  # fmt: skip
        reply = await PUBLISH(self.redis, [topic.meta_key, topic.stream_key], args)
        position = Position.parse(as_text(reply))
        if position is None:
            raise RedisError(f"the publish script answered {reply!r}")
        return position

    async def history(self, topic: Topic, after: int) -> History | None:
        keys = [topic.meta_key, topic.stream_key]
        count = self.settings.realtime_history_size
        return History.from_reply(await HISTORY(self.redis, keys, [after, count]))

    async def send_probe(self, channel: str) -> None:
        command = "SPUBLISH" if self.sharded else "PUBLISH"
        async with asyncio.timeout(self.settings.redis_socket_timeout_seconds):
            await self.redis.execute_command(command, channel, "probe")

    # -- subscriptions -----------------------------------------------------------------

    async def subscribe(self, outbox: Outbox, topic: Topic, since: Position | None) -> Subscription:
        """Join `topic`: live messages from now on, and, from `since`, what was missed (or a
        resync, when the history no longer reaches back there)."""
        state = self.topics.get(topic.name)
        if state is None:
            state = TopicState(topic, self._link_for(topic))
            self.topics[topic.name] = state
            await state.link.add(state)
        subscription = Subscription(outbox, topic)
        state.members.add(subscription)
        try:
            history = await self.history(topic, since.offset if since else NOW)
        except BaseException:
            self.unsubscribe(subscription)
            raise
        if history is not None and state.epoch is None:
            state.epoch, state.offset = history.epoch, history.last
        self._catch_up(subscription, since, history)
        return subscription

    @staticmethod
    def _catch_up(sub: Subscription, since: Position | None, history: History | None) -> None:
        # First the confirmation, then whatever the history replays, then live messages.
        text = json.dumps({"type": "subscribed", "topic": sub.topic.shown})
        sub.outbox.offer(Frame("subscribed", sub.topic.shown, text))
        if history is None:
            if since is not None:
                sub.resync()
        elif since is None:
            sub.epoch, sub.delivered = history.epoch, history.last
        elif since.epoch != history.epoch or not history.oldest - 1 <= since.offset <= history.last:
            sub.resync()
            sub.epoch, sub.delivered = history.epoch, history.last
        else:
            sub.epoch, sub.delivered = history.epoch, since.offset
            sub.catching_up = False
            for offset, frame in history.entries:
                sub.receive(Position(history.epoch, offset), frame)
        sub.caught_up()

    def connected(self, outbox: Outbox, user: str | None) -> None:
        self.connections.add(outbox)
        self.signals.level("realtime_connections", len(self.connections))
        if user is not None:
            self.users.setdefault(user, set()).add(outbox)

    def disconnected(self, outbox: Outbox, user: str | None) -> None:
        self.connections.discard(outbox)
        self.signals.level("realtime_connections", len(self.connections))
        if user is not None and user in self.users:
            self.users[user].discard(outbox)
            if not self.users[user]:
                del self.users[user]

    async def disconnect_user(self, user: str) -> None:
        """Close every connection of `user`, in every worker: through the control channel."""
        command = "SPUBLISH" if self.sharded else "PUBLISH"
        await self.redis.execute_command(command, self.control_channel, f"logout {user}")

    def on_control(self, message: str) -> None:
        verb, _, user = message.partition(" ")
        if verb == "logout":
            for outbox in list(self.users.get(user, ())):
                outbox.close(POLICY_VIOLATION, "logged out")

    def outbox(self) -> Outbox:
        settings = self.settings
        return Outbox(settings.realtime_queue_messages, settings.realtime_queue_bytes)

    def unsubscribe(self, subscription: Subscription) -> None:
        """Leave a topic; the last member to leave ends the hub's subscription to it. Not a
        coroutine, so a connection that is being cancelled can call it."""
        state = self.topics.get(subscription.topic.name)
        if state is None:
            return
        state.members.discard(subscription)
        if not state.members:
            del self.topics[subscription.topic.name]
            state.link.drop(state)
            unsubscribing = state.link.unsubscribe_unless_used(state.topic.channel)
            task = asyncio.get_running_loop().create_task(unsubscribing)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- delivery ----------------------------------------------------------------------

    async def deliver(self, state: TopicState, position: Position, frame: str) -> None:
        """A live message: passed on in order, after whatever the hub missed before it."""
        if state.epoch is None:
            state.epoch, state.offset = position.epoch, position.offset - 1
        elif position.epoch != state.epoch:
            state.epoch, state.offset = position.epoch, 0  # history lost: members resync
        if position.offset <= state.offset:
            return
        if position.offset > state.offset + 1:
            await self._fill(state, until=position.offset - 1)
        self._pass_on(state, position, frame)

    def _pass_on(self, state: TopicState, position: Position, frame: str) -> None:
        state.offset = position.offset
        for member in list(state.members):
            member.receive(position, frame)

    async def _fill(self, state: TopicState, until: int | None = None) -> None:
        history = await self.history(state.topic, state.offset)
        if history is None:
            if state.epoch is not None:  # it had a history, now lost (Redis lost its data)
                self._start_over(state, None, 0)
            return
        if state.epoch is None:
            state.epoch = history.epoch  # the topic began while the hub was not listening
        elif (
            history.epoch != state.epoch
            or history.oldest > state.offset + 1  # the gap is not in the history any more
            or history.last < state.offset  # writes lost (a failover to a lagging replica)
        ):
            # Every member starts over from here (else the next offsets, given again,
            # would be taken for messages already passed on, and dropped).
            self._start_over(state, history.epoch, history.last)
            return
        for offset, frame in history.entries:
            if until is not None and offset > until:
                break
            self._pass_on(state, Position(history.epoch, offset), frame)

    @staticmethod
    def _start_over(state: TopicState, epoch: str | None, last: int) -> None:
        """Each member gets one `resync`, then goes on from `last` of `epoch`."""
        for member in state.members:
            member.resync()
            member.epoch, member.delivered = epoch, last
        state.epoch, state.offset = epoch, last

    async def fill_gaps(self, states: Iterable[TopicState]) -> None:
        """After a (re)connect: what each topic published while the hub was not listening."""
        for state in list(states):
            await self._fill(state)
