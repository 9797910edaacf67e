"""The app's routes a request's path matches, as Starlette's router matches them, read after the fact."""

from __future__ import annotations

from typing import Iterator

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Match


def matching_routes(scope) -> Iterator[tuple[Match, BaseRoute]]:
    """Each route of the app whose path matches the request's: FULL (its method too) or PARTIAL
    (another method), in the router's order. Routers included in the app are walked too."""
    for route in iter_route_contexts(scope["app"].routes):
        match, _ = route.matches(dict(scope))  # a copy: matching must not route the request again
        if match is not Match.NONE:
            yield match, route


def allowed_methods(scope) -> list[str]:
    """Every method the request's path takes, across all the routes that share it.

    Starlette's 405 names the methods of the first such route only (starlette/routing.py, `Router`
    keeps the first partial match), so a path with a GET route and a DELETE route answered a PUT
    with `Allow: GET`."""
    return sorted({m for _, route in matching_routes(scope) for m in (getattr(route, "methods", None) or ())})
