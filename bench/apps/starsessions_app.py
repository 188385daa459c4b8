"""starsessions (2.x) with its Redis store: a login that writes the session, and a route
that reads it, as its README shows."""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from starsessions import SessionAutoloadMiddleware, SessionMiddleware
from starsessions.stores.redis import RedisStore

app = FastAPI()
app.add_middleware(SessionAutoloadMiddleware)
app.add_middleware(SessionMiddleware, store=RedisStore(os.environ["REDIS_URL"]), cookie_https_only=False)


@app.post("/login")
async def login(request: Request) -> dict[str, str]:
    request.session["user"] = "bench"
    return {"user": "bench"}


@app.get("/me")
async def me(request: Request) -> dict[str, str | None]:
    return {"user": request.session.get("user")}
