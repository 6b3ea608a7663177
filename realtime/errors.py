"""HTTP error bodies: `{"error": {"code", "message", ...details}}` with the codes of PROTOCOL.md."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from domain.errors import DomainError

log = logging.getLogger(__name__)

_CODE_FOR_STATUS = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "invalid",
    429: "rate_limited",
}

_STATUS_FOR_CODE = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "invalid_transition": 409,
    "rate_limited": 429,
}


class ApiError(Exception):
    """Raised anywhere below a route; answered as a JSON error with `status`."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def unauthorized(message: str = "missing, expired or invalid token") -> ApiError:
    return ApiError(401, "unauthorized", message)


def error_response(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **details}}, status)


async def on_api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    response = error_response(exc.status, exc.code, exc.message, **exc.details)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def on_domain_error(_request: Request, exc: Exception) -> Response:
    """A refusal of a domain rule, answered with its protocol code."""
    assert isinstance(exc, DomainError)
    status = _STATUS_FOR_CODE.get(exc.code, 400)
    return error_response(status, exc.code, exc.message, **exc.details)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    """JSON errors under /api (clients branch on the code); plain text for the static pages."""
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/api"):
        return PlainTextResponse(exc.detail, exc.status_code, headers=exc.headers)
    code = _CODE_FOR_STATUS.get(exc.status_code, "error")
    return error_response(exc.status_code, code, exc.detail)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal server error")


EXCEPTION_HANDLERS = {
    ApiError: on_api_error,
    DomainError: on_domain_error,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}
