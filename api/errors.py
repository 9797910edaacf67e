"""Typed JSON errors: every failure answers `{"error": {"type", "message", ...}}` with a fitting status.

The shape is OpenAI's (`error.message`, `error.type`, `error.code`), so the OpenAI SDK reads our
errors on the compatible endpoint as it reads its own.
"""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

from api.route_match import allowed_methods
from api.schemas import UNPAIRED, unpaired_surrogate
from chatbot.access.api_keys import ApiKeyError, KeyLimitReached
from common import errors as e

log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of gives its status and type.
STATUS: list[tuple[type[Exception], int, str]] = [
    (KeyLimitReached, 429, "key_limit_reached"),
    (e.SpendingLimitReached, 429, "spending_limit_reached"),
    (ApiKeyError, 404, "api_key_not_found"),
    (e.InputRejected, 422, "input_rejected"),
    (e.ConversationNotFound, 404, "conversation_not_found"),
    (e.PromptNotFound, 404, "prompt_not_found"),
    (e.PromptValidationError, 422, "prompt_invalid"),
    (e.StoreUnavailable, 503, "store_unavailable"),
    (e.VectorStoreUnavailable, 503, "vector_store_unavailable"),
    (e.ContextTooLong, 422, "context_too_long"),
    (e.BackendAuthError, 502, "backend_auth_error"),
    (e.BackendRateLimited, 429, "backend_rate_limited"),
    (e.BackendUnreachable, 502, "backend_unreachable"),
    (e.BackendUnavailable, 502, "backend_unavailable"),
    (e.BackendTimeout, 504, "backend_timeout"),
    (e.BackendStreamBroken, 502, "backend_stream_broken"),
    (e.BackendError, 502, "backend_error"),
    (e.ConfigurationError, 500, "configuration_error"),
    (e.ChatbotError, 400, "bad_request"),
]


class ApiError(Exception):
    """An error the API answers as it is: HTTP status, a type word, a message, optional headers."""

    def __init__(self, status: int, kind: str, message: str, *, headers: dict[str, str] | None = None,
                 **details):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or {}
        self.details = details


def too_large(scope) -> ApiError:
    """413 `request_too_large` naming the cap FastAPI's `max_body_size` put in the request's scope."""
    limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    cap = f"{limit:,} bytes" if limit is not None else "the size this endpoint accepts"
    return ApiError(413, "request_too_large", f"The request body is over {cap}.", max_bytes=limit)


def invalid_request(problems: list[str]) -> ApiError:
    """422 `invalid_request` listing each problem as "field: what is wrong", the fields named in `fields`."""
    return ApiError(422, "invalid_request", "The request is not valid: " + "; ".join(problems),
                    fields=[p.split(":")[0] for p in problems])


def unreadable_json(exc: BaseException) -> str:
    """Why `json.loads` could not read a text, in words the sender can act on."""
    if isinstance(exc, UnicodeDecodeError):  # `json.loads` of bytes decodes them first
        return f"not UTF-8 at byte {exc.start}"
    if isinstance(exc, RecursionError):  # nested deeper than the parser goes
        return "nested too deep"
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        # CPython refuses to convert longer digit strings (a guard against quadratic time; Python docs,
        # "Integer string conversion length limitation")
        return f"an integer over {sys.get_int_max_str_digits():,} digits"
    return str(exc)


def describe(exc: BaseException) -> ApiError:
    """The ApiError for any exception: typed core errors keep their message, others say only their class."""
    if isinstance(exc, ApiError):
        return exc
    for cls, status, kind in STATUS:
        if isinstance(exc, cls):
            headers, details = {}, {}
            wait = getattr(exc, "retry_after", None)
            if wait:
                headers["Retry-After"] = str(max(1, round(wait)))
                details["retry_after"] = round(float(wait), 1)
            if getattr(exc, "provider", ""):
                details["provider"] = exc.provider
            if isinstance(exc, KeyLimitReached):
                details["limit"] = exc.limit
            return ApiError(status, kind, str(exc) or kind.replace("_", " "), headers=headers, **details)
    return ApiError(500, "internal_error", f"The request failed ({exc.__class__.__name__}); see the server log.")


def body(error: ApiError) -> dict:
    return {"error": {"type": error.kind, "code": error.kind, "message": error.message, **error.details}}


def response(error: ApiError) -> JSONResponse:
    return JSONResponse(body(error), status_code=error.status, headers=error.headers)


# pydantic's errors that list what is accepted but not what was sent: the message adds the value sent.
NAMES_ITS_INPUT = ("literal_error", "enum", "bool_type", "bool_parsing", "int_parsing", "int_type", "int_from_float",
                   "greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _problem(item: dict) -> str:
    """What is wrong with one field, from pydantic's error."""
    given = item.get("input")
    # A constrained string (`max_length`) or a dict key meets pydantic's own UTF-8 check, whose words
    # name no character: say what the other strings' check (api/schemas.py) says.
    if item.get("type") == "string_unicode" and isinstance(given, str) and (escape := unpaired_surrogate(given)):
        return UNPAIRED.format(escape=escape)
    message = item.get("msg", "invalid")
    if item.get("type") in NAMES_ITS_INPUT and isinstance(given, (str, int, float, bool)):
        message += f", not {e.shown(given)!r}" if isinstance(given, str) else f", not {e.shown(given)}"
    return message


def install(app: FastAPI, count_error) -> None:
    """Answer every error as typed JSON; `count_error(kind)` counts it for /metrics."""

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        error = describe(exc)
        if error.status >= 500 and error.kind == "internal_error":
            log.exception("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        count_error(error.kind)
        return response(error)

    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for item in exc.errors():
            if item.get("type") == "json_invalid":  # its loc is ("body", offset): name the body, not a number
                error = (item.get("ctx") or {}).get("error", "JSON decode error")
                problems.append(f"body: not valid JSON ({error} at character {item['loc'][-1]})")
                continue
            # A location may hold a name the client sent (an unknown field's): quoted, not echoed whole.
            where = e.shown(".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body")
            problems.append(f"{where}: {_problem(item)}")
        count_error("invalid_request")
        return response(invalid_request(problems))

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:  # FastAPI's `max_body_size` counted the body over its cap
            error = too_large(request.scope)
        elif exc.status_code == 400:
            # FastAPI's "There was an error parsing the body" (fastapi/routing.py, `get_request_handler`):
            # the error `json.loads` raised is its cause; Starlette's words on a broken form its detail.
            cause = exc.__cause__
            error = invalid_request([f"body: not valid JSON ({unreadable_json(cause)})"
                                     if isinstance(cause, (ValueError, RecursionError)) else f"body: {exc.detail}"])
        else:
            where = e.shown(request.url.path)  # the path as sent: quoted, not echoed whole
            # Starlette's headers are the answer's: a 405 carries `Allow`, the methods the path takes.
            headers = dict(exc.headers or {})
            if exc.status_code == 405:
                allowed = ", ".join(allowed_methods(request.scope)) or headers.get("Allow", "")
                headers["Allow"] = allowed
                message = f"{request.method} is not allowed on {where}" + (f"; use {allowed}." if allowed else ".")
            elif exc.status_code == 404:
                message = f"No route {request.method} {where}."
            else:
                message = str(exc.detail)
            kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
            error = ApiError(exc.status_code, kind, message, headers=headers)
        count_error(error.kind)
        return response(error)

    app.add_exception_handler(Exception, on_error)
    app.add_exception_handler(ApiError, on_error)
    app.add_exception_handler(e.ChatbotError, on_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
