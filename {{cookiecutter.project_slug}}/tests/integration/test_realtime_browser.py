"""The demo page in a real headless Chromium: a message published over HTTP shows on the page
over the WebSocket and over Server-Sent Events, and the event stream resumes on its own
after the server restarts."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.main import create_app

from tests.browser import browser_page, require_chromium
from tests.realtime_clients import served, visitor
from tests.redis_servers import free_port
from tests.service import SettingsFactory

pytestmark = pytest.mark.anyio


async def test_the_demo_page_shows_messages_over_both_transports_and_resumes(
    real_settings: SettingsFactory, tmp_path: Path
) -> None:
    require_chromium()
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    settings = real_settings(
        realtime_allowed_origins=[origin],
{%- if cookiecutter.use_sessions %}
        password_hash_cost=10,
        session_secret="s" * 40,  # the same after the restart: cookies stay valid
{%- endif %}
    )
    async with AsyncExitStack() as first_run:
        worker = await first_run.enter_async_context(served(create_app(settings), port))
        publisher = await first_run.enter_async_context(visitor(worker))
        async with browser_page(f"{origin}/realtime/demo", tmp_path / "profile") as page:
{%- if cookiecutter.use_sessions %}
            await page.wait_for_text("login", "Log in")
            await page.evaluate("document.getElementById('login-button').click()")
            await page.wait_for_text("login-state", "logged in")
{%- endif %}
            await page.wait_for_text("ws-state", "open")
            await page.wait_for_text("sse-state", "open")

            await publisher.publish("news", "published over HTTP")

            await page.wait_for_text("ws-log", "published over HTTP")
            await page.wait_for_text("sse-log", "published over HTTP")

            # The server stops under the open page, and comes back on the same port.
            await first_run.aclose()
            await page.wait_for_text("sse-state", "reconnecting")
            async with served(create_app(settings), port) as again, visitor(again) as later:
                await later.publish("news", "after the restart")

                await page.wait_for_text("sse-log", "after the restart", within=15)
                await page.wait_for_text("ws-log", "after the restart", within=15)
