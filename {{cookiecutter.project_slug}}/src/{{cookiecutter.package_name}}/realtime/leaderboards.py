"""Leaderboards in sorted sets: an all-time board and a board per day, updated together in one
round trip, with competition ranks (equal scores share a rank: 1, 2, 2, 4) and equal scores
listed by member name. Each board's keys share one hash tag, so its scripts touch one Cluster
slot. Changes are announced on the topic `leaderboard.<board>`, at most 4 times a second
per board across all workers (`ANNOUNCE_EVERY_MS`).

Scores are stored negated: Redis orders equal scores by member name, ascending, so with
negated scores an ascending range is best first and ties read alphabetically. Scores are
doubles in Redis: totals are exact up to 2**53.
"""

# No `from __future__ import annotations`: FastAPI reads these routes' annotations.

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, BeforeValidator, Field

from ..contract import errors
from ..errors import ServiceError
from ..scripts import LuaScript, hash_tagged
from .hub import Hub, as_text
from .topics import TOPIC_PATTERN, Topic

logger = logging.getLogger(__name__)

SCORE = LuaScript(__package__, "score.lua")
BOARD = LuaScript(__package__, "board.lua")
ANNOUNCE_EVERY_MS = 250
ANNOUNCED_ENTRIES = 10
DAY_BOARD_KEPT = timedelta(days=7)
MAX_INCREMENT = 10**12

Period = Literal["all", "day"]
BoardName = Annotated[str, Path(pattern=TOPIC_PATTERN, examples=["arcade"])]
MemberName = Annotated[str, Path(min_length=1, max_length=64, examples=["alice"])]


def _json_integer(value: object) -> object:
    """A JSON integer (10, or 10.0), not a string or a boolean that Python would take."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer")
    return value


class ScoreChange(BaseModel):
    member: str = Field(min_length=1, max_length=64, examples=["alice"])
    increment: Annotated[int, BeforeValidator(_json_integer)] = Field(
        ge=-MAX_INCREMENT, le=MAX_INCREMENT, examples=[10]
    )


class Standing(BaseModel):
    member: str
    score: int
    rank: int


class Entry(BaseModel):
    rank: int
    member: str
    score: int


class Page(BaseModel):
    entries: list[Entry]
    total: int


class Around(BaseModel):
    rank: int
    score: int
    around: list[Entry]


def _points(stored: str | bytes) -> int:
    """A stored (negated) score as points."""
    return -int(Decimal(as_text(stored)))


def _entries(first_rank: int, first_position: int, flat: list[Any]) -> list[Entry]:
    """Entries from [member, stored, member, stored, ...] starting at `first_position`:
    an entry whose score equals the one before shares its rank, else its rank is its place."""
    entries: list[Entry] = []
    for index in range(0, len(flat), 2):
        score = _points(flat[index + 1])
        if not entries:
            rank = first_rank
        elif score == entries[-1].score:
            rank = entries[-1].rank
        else:
            rank = first_position + index // 2 + 1
        entries.append(Entry(rank=rank, member=as_text(flat[index]), score=score))
    return entries


class Leaderboards:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.prefix = hub.prefix
        self._announcing: set[asyncio.Task[None]] = set()

    def key(self, board: str, period: Period, day: datetime | None = None) -> str:
        if period == "all":
            return hash_tagged(self.prefix, f"lb:{board}", "all")
        day = day or datetime.now(UTC)
        return hash_tagged(self.prefix, f"lb:{board}", "day", day.strftime("%Y-%m-%d"))

    async def add(self, board: str, member: str, increment: int) -> Standing:
        now = datetime.now(UTC)
        day_end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        keys = [self.key(board, "all"), self.key(board, "day", now),
                hash_tagged(self.prefix, f"lb:{board}", "announce")]  # fmt: skip
        expires = int((day_end + DAY_BOARD_KEPT).timestamp())
        stored, rank, announce = await SCORE(
            self.hub.redis, keys, [member, str(-increment), expires, ANNOUNCE_EVERY_MS]
        )
        if announce:
            task = asyncio.get_running_loop().create_task(self._announce(board))
            self._announcing.add(task)
            task.add_done_callback(self._announcing.discard)
        return Standing(member=member, score=_points(stored), rank=int(rank))

    async def page(self, board: str, period: Period, offset: int, limit: int) -> Page:
        reply = await BOARD(self.hub.redis, [self.key(board, period)], ["page", offset, limit])
        total, _, _, first, start, *flat = reply
        return Page(entries=_entries(int(first or 0), int(start), flat), total=int(total))

    async def around(self, board: str, period: Period, member: str, around: int) -> Around | None:
        reply = await BOARD(self.hub.redis, [self.key(board, period)], ["member", member, around])
        if not reply:
            return None
        _, rank, stored, first, start, *flat = reply
        entries = _entries(int(first), int(start), flat)
        return Around(rank=int(rank), score=_points(stored), around=entries)

    async def stop(self) -> None:
        """At shutdown: announcements still waiting for their window are dropped."""
        for task in list(self._announcing):
            task.cancel()
        await asyncio.gather(*self._announcing, return_exceptions=True)

    async def _announce(self, board: str) -> None:
        """Once the gate's window has passed: the board as it then is, on its topic."""
        await asyncio.sleep(ANNOUNCE_EVERY_MS / 1000)
        try:
            top = await self.page(board, "all", 0, ANNOUNCED_ENTRIES)
            data = json.dumps({"board": board, "top": top.model_dump()["entries"]})
            await self.hub.publish(Topic.make(self.prefix, f"leaderboard.{board}"), data)
        except Exception:  # an announcement is best effort; the board itself is intact
            logger.warning("announcing leaderboard %s failed", board, exc_info=True)


def get_leaderboards(request: Request) -> Leaderboards:
    boards: Leaderboards = request.app.state.leaderboards
    return boards


Boards = Annotated[Leaderboards, Depends(get_leaderboards)]


def build_leaderboard_router(user_dependency: Any) -> APIRouter:
    router = APIRouter(prefix="/leaderboards", tags=["leaderboards"])
    User = Annotated[str | None, Depends(user_dependency)]  # noqa: N806 - a type

    @router.post("/{board}/scores", responses=errors(e503="Scores cannot be recorded now (Redis)."))
    async def add_score(
        board: BoardName, change: ScoreChange, boards: Boards, user: User
    ) -> Standing:
        """Add to a member's score on the all-time board and today's, in one round trip."""
        return await boards.add(board, change.member, change.increment)

    @router.get("/{board}", responses=errors(e503="The board cannot be read now (Redis)."))
    async def read_board(
        board: BoardName,
        boards: Boards,
        user: User,
        period: Period = "all",
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> Page:
        """Best first; equal scores share a rank and are listed by member name."""
        return await boards.page(board, period, offset, limit)

    @router.get(
        "/{board}/members/{member}",
        responses=errors(e404="Not on this board.", e503="The board cannot be read now (Redis)."),
    )
    async def read_member(
        board: BoardName,
        member: MemberName,
        boards: Boards,
        user: User,
        period: Period = "all",
        around: Annotated[int, Query(ge=0, le=50)] = 2,
    ) -> Around:
        """The member's rank and score, with the entries around it."""
        found = await boards.around(board, period, member, around)
        if found is None:
            raise ServiceError(404, "not_on_board", f"{member!r} has no score on {board!r}.")
        return found

    return router
