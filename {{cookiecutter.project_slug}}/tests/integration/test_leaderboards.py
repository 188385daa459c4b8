"""Leaderboards on the real Redis under test (on a Cluster: every script in one slot)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.main import create_app

from tests.realtime_clients import Served, Visitor, frames, served, subscribe, visitor
from tests.redis_target import RedisTarget
from tests.service import SettingsFactory

pytestmark = pytest.mark.anyio

# Ranks 1, 2, 2, 4, 4, 6; equal scores by member name.
SCORES = {"frank": 10, "carol": 50, "erin": 50, "bob": 100, "dave": 120, "alice": 100}
STANDINGS = [(1, "dave", 120), (2, "alice", 100), (2, "bob", 100),
             (4, "carol", 50), (4, "erin", 50), (6, "frank", 10)]  # fmt: skip


@pytest.fixture
async def player(realtime_settings: SettingsFactory) -> AsyncIterator[Visitor]:
    async with served(create_app(realtime_settings())) as worker, visitor(worker) as found:
        yield found


async def add(player: Visitor, board: str, member: str, increment: int) -> dict[str, Any]:
    answer = await player.http.post(
        f"/leaderboards/{board}/scores",
        json={"member": member, "increment": increment},
        headers=player.headers,
    )
    assert answer.status_code == 200, answer.text
    standing: dict[str, Any] = answer.json()
    return standing


async def read(player: Visitor, path: str, **params: Any) -> Any:
    answer = await player.http.get(path, params=params, headers=player.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def as_tuples(entries: list[dict[str, Any]]) -> list[tuple[int, str, int]]:
    return [(entry["rank"], entry["member"], entry["score"]) for entry in entries]


async def fill(player: Visitor, board: str) -> None:
    for member, score in SCORES.items():
        await add(player, board, member, score)


async def test_a_score_answers_the_new_total_and_its_competition_rank(player: Visitor) -> None:
    await add(player, "arcade", "alice", 30)
    await add(player, "arcade", "bob", 50)

    standing = await add(player, "arcade", "alice", 20)

    assert standing == {"member": "alice", "score": 50, "rank": 1}


async def test_equal_scores_share_a_rank_and_are_listed_by_member_name(player: Visitor) -> None:
    await fill(player, "ties")

    board = await read(player, "/leaderboards/ties")

    assert as_tuples(board["entries"]) == STANDINGS
    assert board["total"] == 6


async def test_a_page_keeps_the_ranks_of_the_whole_board(player: Visitor) -> None:
    await fill(player, "paged")

    page = await read(player, "/leaderboards/paged", offset=2, limit=3)

    assert as_tuples(page["entries"]) == STANDINGS[2:5]
    assert page["total"] == 6


async def test_a_member_comes_with_the_entries_around_it(player: Visitor) -> None:
    await fill(player, "around")

    found = await read(player, "/leaderboards/around/members/erin", around=1)

    assert (found["rank"], found["score"]) == (4, 50)
    assert as_tuples(found["around"]) == STANDINGS[3:6]


async def test_a_member_not_on_the_board_is_404(player: Visitor) -> None:
    await fill(player, "missing")

    answer = await player.http.get("/leaderboards/missing/members/zoe", headers=player.headers)

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_on_board"


async def test_the_day_board_counts_too_and_expires_a_week_after_its_day_set_once(
    player: Visitor, redis_target: RedisTarget
) -> None:
    await add(player, "daily", "alice", 5)
    assert isinstance(player.served, Served)  # in this process: its state can be read
    boards = player.served.app.state.leaderboards
    key = boards.key("daily", "day")
    admin = redis_target.admin()
    try:
        first = await admin.expiretime(key)
        await add(player, "daily", "alice", 5)
        second = await admin.expiretime(key)
    finally:
        await admin.aclose()
    day = await read(player, "/leaderboards/daily", period="day")

    assert as_tuples(day["entries"]) == [(1, "alice", 10)]
    assert first == second  # set once, on the day's first score
    assert 7 * 86400 < first - time.time() <= 8 * 86400


async def test_totals_are_exact_up_to_2_to_the_53(
    player: Visitor, redis_target: RedisTarget
) -> None:
    assert isinstance(player.served, Served)  # in this process: its state can be read
    key = player.served.app.state.leaderboards.key("huge", "all")
    admin = redis_target.admin()
    try:
        await admin.zadd(key, {"alice": -(2**53 - 10)})  # stored negated
    finally:
        await admin.aclose()

    standing = await add(player, "huge", "alice", 9)

    assert standing["score"] == 2**53 - 1
    assert as_tuples((await read(player, "/leaderboards/huge"))["entries"]) == [
        (1, "alice", 2**53 - 1)
    ]


async def test_changes_through_two_workers_are_announced_at_most_four_times_a_second(
    realtime_settings: SettingsFactory,
) -> None:
    settings = realtime_settings()
    async with AsyncExitStack() as stack:
        workers = [await stack.enter_async_context(served(create_app(settings))) for _ in range(2)]
        players = [await stack.enter_async_context(visitor(worker)) for worker in workers]
        ws = await stack.enter_async_context(players[0].websocket())
        await subscribe(ws, "leaderboard.burst")
        started = time.monotonic()
        for n in range(40):  # through one worker, then the other
            await add(players[n % 2], "burst", f"p{n % 5}", 1)
        took = time.monotonic() - started
        await asyncio.sleep(0.4)  # the last window's announcement
        announced = []
        while True:
            try:
                announced += await frames(ws, 1, within=0.3)
            except TimeoutError:
                break

    assert 1 <= len(announced) <= int(took / 0.25) + 2
    final = announced[-1]["data"]
    assert final["board"] == "burst"
    assert [entry["score"] for entry in final["top"]] == [8, 8, 8, 8, 8]
