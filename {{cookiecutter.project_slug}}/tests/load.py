"""A bounded load generator for fault tests: a steady rate of requests, each timed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Answer:
    path: str
    started: float  # time.monotonic()
    took: float
    status: int
    headers: httpx.Headers


async def steady_load(
    client: httpx.AsyncClient,
    paths: Sequence[str],
    *,
    rate: float,
    seconds: float,
    headers: Mapping[str, str] | None = None,
    most_in_flight: int = 200,
) -> list[Answer]:
    """`rate` requests a second for `seconds`, over `paths` in turn, each started on time
    whether or not the earlier ones have been answered (at most `most_in_flight` at once)."""
    answers: list[Answer] = []
    slots = asyncio.Semaphore(most_in_flight)

    async def one(path: str) -> None:
        async with slots:
            started = time.monotonic()
            response = await client.get(path, headers=dict(headers or {}))
            took = time.monotonic() - started
            answers.append(Answer(path, started, took, response.status_code, response.headers))

    begin = time.monotonic()
    tasks = []
    for index in range(round(rate * seconds)):
        delay = begin + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(paths[index % len(paths)])))
    await asyncio.gather(*tasks)
    return sorted(answers, key=lambda answer: answer.started)
