"""API keys on every `/v1` request: `Authorization: Bearer desk_...` (as the OpenAI SDK sends) or `X-API-Key`.

A missing, unknown or revoked key is refused with 401; an agent key on an admin route with 403.
Each accepted request counts against the key's requests a minute (429 with Retry-After over it).
The check is awaited on the event loop (api/key_check.py), not sent to a worker thread, and runs
before the app reads the body (api/key_first.py): a caller without a live key gets 401, never a
422 naming the body's fields. The route's dependency reuses that check and adds the role.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.desk import desk_of
from api.errors import ApiError
from chatbot.access.api_keys import ApiKey
from chatbot.access.roles import ADMIN

bearer = HTTPBearer(auto_error=False, description="An API key made on the app's API keys page or by "
                                                  "`python -m chatbot api-keys create`.")
header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def live_key(request: Request) -> ApiKey:
    """The request's live key, verified and counted against its rate once per request (kept in
    `request.state.api_key`). Raises ApiError 401 (missing, unknown or revoked) or KeyLimitReached."""
    checked = getattr(request.state, "api_key", None)
    if checked is not None:
        return checked
    credentials, key_header = await bearer(request), await header(request)
    given = (credentials.credentials if credentials else "") or (key_header or "")
    if not given:
        raise ApiError(401, "missing_api_key", "Send an API key: `Authorization: Bearer desk_...` or `X-API-Key`.",
                       headers={"WWW-Authenticate": "Bearer"})
    the_desk = desk_of(request)
    key = await the_desk.key_check.verify(given)
    if key is None:
        raise ApiError(401, "invalid_api_key", "This API key is unknown or was revoked.",
                       headers={"WWW-Authenticate": "Bearer"})
    await the_desk.key_check.admit(key)
    request.state.api_key = key
    return key


async def _authenticate(request: Request, admin: bool) -> ApiKey:
    key = await live_key(request)  # checked already by api/key_first.py, on a whole app
    if admin and key.role != ADMIN:
        raise ApiError(403, "admin_only", f"The key {key.name!r} is an agent key; this needs an admin key.")
    return key


# The security schemes are parameters so that OpenAPI (/docs) shows them; `live_key` reads the headers.
async def agent_key(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
                    key_header: str | None = Depends(header)) -> ApiKey:
    """Any live key (agent or admin)."""
    return await _authenticate(request, admin=False)


async def admin_key(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
                    key_header: str | None = Depends(header)) -> ApiKey:
    """A live admin key."""
    return await _authenticate(request, admin=True)
