"""Which API route will serve a request, found before routing as the router would find it.

The request path needs it to know each feature's work for the route, and the metrics to
label a request by its route's template (`/users/{user_id}`), never by its raw path, even
when the request is answered before routing (a cached response, a 429).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.routing import Match
from starlette.types import Scope


class RouteIndex:
    """The API routes of an app, and the route found for each (method, root path, path),
    remembered up to LIMIT of them and then forgotten wholesale (paths are the client's
    choice). Rebuilt when routes are added (the first request, or a route added since)."""

    LIMIT = 4096

    def __init__(self) -> None:
        self.routes: list[RouteContext] = []
        self.templates: list[str] = []
        self.routes_seen = -1
        self.found: dict[tuple[str, str, str], int | None] = {}

    def refresh(self, app: FastAPI) -> bool:
        """Rebuild if the app's routes changed; True when it did."""
        if len(app.router.routes) == self.routes_seen:
            return False
        self.routes_seen = len(app.router.routes)
        self.routes = [
            route
            for route in iter_route_contexts(app.router.routes)
            # The docs and static files: no feature works on them.
            if isinstance(route.original_route, APIRoute)
        ]
        self.templates = [route.path_format or "" for route in self.routes]
        self.found.clear()
        return True

    def template(self, scope: Scope) -> str | None:
        """The template of the route that will serve this request (`/users/{user_id}`), or
        None when none matches fully."""
        self.refresh(scope["app"])
        found = self.find(scope)
        return None if found is None else self.templates[found]

    def find(self, scope: Scope) -> int | None:
        """The index in `routes` of the route that will serve this request (the first full
        match), or None when none matches fully (the router answers 404 or 405)."""
        key = (scope["method"], scope.get("root_path", ""), scope["path"])
        try:
            return self.found[key]
        except KeyError:
            pass
        if len(self.found) >= self.LIMIT:
            self.found.clear()
        index = self.found[key] = next(
            (i for i, route in enumerate(self.routes) if route.matches(scope)[0] is Match.FULL),
            None,
        )
        return index
