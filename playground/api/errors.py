"""Errors the OpenAI way: `{"error": {"message", "type", "param", "code"}}` with the HTTP status clients expect.

400 names the parameter (`param`) with the range and the value given; 404 `model_not_found`; 401
`invalid_api_key`; 429 `rate_limit_exceeded` with a Retry-After header; 503 while the model loads. No route
of /v1 ever answers with a stack trace: anything unexpected is a 500 whose message names only the error type.
"""
from __future__ import annotations

import json
import re

from starlette.responses import Response

INVALID = "invalid_request_error"


class ApiError(Exception):
    """One OpenAI-shaped error; `retry_after` (seconds) adds the Retry-After header (429, 503)."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = INVALID, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return Response(json.dumps(self.body(), ensure_ascii=False), status_code=self.status, headers=headers,
                        media_type="application/json")


def invalid(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def busy(message: str, retry_after: int) -> ApiError:
    return ApiError(429, message, code="rate_limit_exceeded", type="rate_limit_error", retry_after=max(1, int(retry_after)))


_RETRY = re.compile(r"try again in (\d+) s")


def from_scheduler(err: Exception) -> ApiError | None:
    """The scheduler's refusals ("busy: … try again in N s", the per-client cap) as 429, else None."""
    text = str(err)
    if text.startswith("busy") or text.startswith("too many requests"):
        m = _RETRY.search(text)
        return busy(text, int(m.group(1)) if m else 1)
    if "still loading" in text:
        return ApiError(503, text, code="model_loading", type="server_error", retry_after=10)
    return None


def internal(err: BaseException) -> ApiError:
    """An unexpected failure: its type only (the details stay in the server log)."""
    return ApiError(500, f"the server failed to answer ({type(err).__name__}); try again", code="internal_error",
                    type="server_error")
