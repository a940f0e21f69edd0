"""HTTP hardening for the served app, as a plain ASGI middleware (passed to Gradio's FastAPI app via `app_kwargs`).

- Bodies over `max_body_bytes` are refused with 413 before they are read into memory (a declared
  Content-Length is checked at once; a chunked body is counted as it streams). Uploads have their own,
  smaller cap (`launch(max_file_size=...)`).
- Every response gets `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`, and a
  `Content-Security-Policy: frame-ancestors` that allows this site and Hugging Face (a Space embeds the
  app in an iframe there) instead of X-Frame-Options, which cannot name several origins.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

FRAME_ANCESTORS = "frame-ancestors 'self' https://huggingface.co https://*.hf.space"
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
           (b"content-security-policy", FRAME_ANCESTORS.encode())]


class BodyTooLarge(Exception):
    pass


class HttpGuard:
    def __init__(self, app, max_body_bytes: int) -> None:
        self.app, self.max_body_bytes = app, max_body_bytes

    async def _refuse(self, send: Send) -> None:
        body = f"request body over {self.max_body_bytes} bytes".encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()), *HEADERS]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
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
