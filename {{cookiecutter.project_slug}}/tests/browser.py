"""A headless Chromium from the OS packages, driven over the DevTools protocol: enough to open
a page and read what it shows."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.redis_servers import free_port

NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM = next((path for name in NAMES if (path := shutil.which(name))), None)


def require_chromium() -> str:
    """The browser's path; else skip, saying why (REQUIRE_BROWSER=1: fail instead)."""
    if CHROMIUM is None:
        reason = "Chromium is not installed (apt install chromium): the browser test needs it"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


class Page:
    def __init__(self, devtools: ClientConnection) -> None:
        self.devtools = devtools
        self.ids = count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        await self.devtools.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.devtools.recv())
            if reply.get("id") == number:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def text_of(self, element_id: str) -> str:
        text = await self.evaluate(f"document.getElementById({element_id!r}).innerText")
        return str(text or "")

    async def wait_for_text(self, element_id: str, wanted: str, within: float = 10) -> None:
        async with asyncio.timeout(within):
            while wanted not in await self.text_of(element_id):  # noqa: ASYNC110 - a page
                await asyncio.sleep(0.1)


@asynccontextmanager
async def browser_page(url: str, profile: Path) -> AsyncIterator[Page]:
    """Chromium, headless, showing `url`."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        require_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
        "--no-first-run", f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as devtools_http:
            targets = await _targets(devtools_http)
            page_target = next(target for target in targets if target["type"] == "page")
            async with connect(page_target["webSocketDebuggerUrl"], max_size=None) as devtools:
                page = Page(devtools)
                await page.call("Page.navigate", url=url)
                yield page
    finally:
        process.terminate()
        async with asyncio.timeout(10):
            await process.wait()


async def _targets(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    async with asyncio.timeout(20):
        while True:
            try:
                targets: list[dict[str, Any]] = (await client.get("/json/list")).json()
                if any(target["type"] == "page" for target in targets):
                    return targets
            except httpx.TransportError:
                pass  # not listening yet
            await asyncio.sleep(0.1)
