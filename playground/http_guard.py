"""HTTP hardening for the served app, as a plain ASGI middleware (passed to Gradio's FastAPI app via `app_kwargs`).

- Bodies over `max_body_bytes` are refused with 413 before they are read into memory (a declared
  Content-Length is checked at once; a chunked body is counted as it streams). Uploads have their own,
  smaller cap (`launch(max_file_size=...)`).
- Every response gets `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`, and a
  `Content-Security-Policy: frame-ancestors` that allows this site and Hugging Face (a Space embeds the
  app in an iframe there) instead of X-Frame-Options, which cannot name several origins.
- `POST /gradio_api/run/<name>` (and `/api/<name>`) answers 404 for every name but the app's public unqueued
  events (`run_names`, e.g. the Cancel buttons) and `predict` (the page's own route for unqueued events,
  by fn_index). Queued events get Gradio's own 404 (`api_open=False`); without this, the events Gradio
  named itself (`js_fn`, `lambda_6`, … front-end steps and UI helpers) answered 500 with no message.
"""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

FRAME_ANCESTORS = "frame-ancestors 'self' https://huggingface.co https://*.hf.space"
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
           (b"content-security-policy", FRAME_ANCESTORS.encode())]


class BodyTooLarge(Exception):
    pass


def run_names(demo) -> frozenset[str]:
    """Names a direct `POST /gradio_api/run/<name>` may call: `predict` and the public unqueued Python events."""
    return frozenset({"predict"} | {f.api_name for f in demo.fns.values() if f.fn is not None and not f.queue
                                    and f.api_name and getattr(f, "api_visibility", "public") == "public"})


class HttpGuard:
    def __init__(self, app, max_body_bytes: int, run_names: frozenset[str] | None = None) -> None:
        self.app, self.max_body_bytes, self.run_names = app, max_body_bytes, run_names

    def _unknown_run(self, scope: Scope) -> str | None:
        """The name in a direct run route that is not an endpoint (None when the route is something else)."""
        if self.run_names is None or scope.get("method") != "POST":
            return None
        parts = scope.get("path", "").rstrip("/").split("/")
        if len(parts) == 4 and parts[1] == "gradio_api" and parts[2] in ("run", "api") and parts[3] not in self.run_names:
            return parts[3]
        return None

    async def _not_found(self, send: Send, name: str) -> None:
        body = json.dumps({"detail": f"no API endpoint named {name[:100]} here; the public ones are listed at "
                                     "/gradio_api/info"}).encode()
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *HEADERS]})
        await send({"type": "http.response.body", "body": body})

    async def _refuse(self, send: Send) -> None:
        body = f"request body over {self.max_body_bytes} bytes".encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()), *HEADERS]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        unknown = self._unknown_run(scope)
        if unknown is not None:
            return await self._not_found(send, unknown)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await self._refuse(send)
        seen = 0
        started = False

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []), *(h for h in HEADERS if h[0] not in names)]}
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)
