"""Query strings: a GET's unknown parameter is refused, not ignored.

A client that sends `?offset=500` or `?sort=oldest` to a route that takes neither would otherwise get
the first page, or the usual order, and never know its parameter did nothing. The check is one
dependency on every router (api/app.py), reading the parameters each route declares from FastAPI's
own model of it, so a parameter added to a route later is known without another list to keep.
Only the API's resources (`/v1/...`) are checked, not the probes' `/health` and `/metrics`.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.params import Query

from api import errors
from common.errors import shown


def _declared(dependant: Dependant) -> tuple[str, ...]:
    """The query parameters a route reads, its dependencies' included, by the names clients send."""
    return tuple(f.alias for f in get_flat_params(dependant) if isinstance(f.field_info, Query))


async def known_query(request: Request) -> None:
    """422 naming each query parameter a GET route does not take (and the ones it does)."""
    route = request.scope.get("route")
    # /health and /metrics are left alone: probes and scrapers add their own parameters (a cache
    # buster, Prometheus' `params`), and what they ask for does not change with them.
    if request.method != "GET" or route is None or not request.query_params or not request.url.path.startswith("/v1/"):
        return
    known = _declared(route.dependant)
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in known]
    if unknown:
        takes = f"{request.url.path} takes {', '.join(known)}" if known else f"{request.url.path} takes none"
        raise errors.invalid_request([f"{shown(name)}: not a query parameter of this route ({shown(takes)})"
                                      for name in unknown[:20]])
