"""API keys on every `/v1` request: `Authorization: Bearer desk_...` (as the OpenAI SDK sends) or `X-API-Key`.

A missing, unknown or revoked key is refused with 401; an agent key on an admin route with 403.
Each accepted request counts against the key's requests a minute (429 with Retry-After over it).
The check is awaited on the event loop (api/key_check.py), not sent to a worker thread.
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


async def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None,
                        key_header: str | None, admin: bool) -> ApiKey:
    given = (credentials.credentials if credentials else "") or (key_header or "")
    if not given:
        raise ApiError(401, "missing_api_key", "Send an API key: `Authorization: Bearer desk_...` or `X-API-Key`.",
                       headers={"WWW-Authenticate": "Bearer"})
    the_desk = desk_of(request)
    key = await the_desk.key_check.verify(given)
    if key is None:
        raise ApiError(401, "invalid_api_key", "This API key is unknown or was revoked.",
                       headers={"WWW-Authenticate": "Bearer"})
    if admin and key.role != ADMIN:
        raise ApiError(403, "admin_only", f"The key {key.name!r} is an agent key; this needs an admin key.")
    await the_desk.key_check.admit(key)
    request.state.api_key = key
    return key


async def agent_key(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
              key_header: str | None = Depends(header)) -> ApiKey:
    """Any live key (agent or admin)."""
    return await _authenticate(request, credentials, key_header, admin=False)


async def admin_key(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
              key_header: str | None = Depends(header)) -> ApiKey:
    """A live admin key."""
    return await _authenticate(request, credentials, key_header, admin=True)
