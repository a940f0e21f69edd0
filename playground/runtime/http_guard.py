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
- No route answers bad input with a bare 500 (given the demo): an `fn_index` that names no event (or, on
  `/run/predict`, no event the page runs directly), a `/call/<name>` for no event, and an SSE stream for an
  event or session the queue does not hold answer 404 with a message before Gradio sees them; any other
  exception a route raises before its response starts answers 400 naming the route and the error (never
  a traceback); a 500 Gradio builds itself becomes 400 (`{"error": null}` gains a message). A 500 outside
  `/gradio_api/` that carries a message (the /v1 API's own error shape) passes unchanged.
- `/monitoring` and `/monitoring/summary` (Gradio's request counts and timings of every event): off unless
  `PLAYGROUND_ADMIN_KEY` is set (`launch(enable_monitoring=...)`, see `admin_key`); with it, they answer only a
  request that carries the key (`X-Admin-Key: <key>` or `Authorization: Bearer <key>`), else 401.
- A long job belongs to a client (given the demo; playground/runtime/job_owners.py): each result stream
  (`/gradio_api/queue/data`, `GET /gradio_api/call/<name>/<event_id>`) is counted open while its response runs,
  a watchdog cancels long jobs whose session has no open stream for `SERVE.job_listener_grace_s`, and a new long
  job (`POST /gradio_api/call/<name>`, `/gradio_api/queue/join`) from a client address that already has
  `SERVE.jobs_per_client` queued or running is refused with 429 and a message naming the setting.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from playground.runtime.job_owners import Listeners, Watchdog, cap_problem, client_host, is_capped_job

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

FRAME_ANCESTORS = "frame-ancestors 'self' https://huggingface.co https://*.hf.space"
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
           (b"content-security-policy", FRAME_ANCESTORS.encode())]


log = logging.getLogger(__name__)
FN_INDEX_ROUTES = ("/gradio_api/queue/join", "/gradio_api/run/predict")  # JSON bodies naming an event by fn_index
INFO = "the public API and its parameters are listed at /gradio_api/info"


class BodyTooLarge(Exception):
    pass


MONITORING = ("/monitoring", "/monitoring/summary")


def admin_key(env=os.environ) -> str | None:
    """The optional admin key (PLAYGROUND_ADMIN_KEY); None when unset or blank: monitoring is then off."""
    return (env.get("PLAYGROUND_ADMIN_KEY") or "").strip() or None


def _path(scope: Scope) -> str:
    return scope.get("path", "").rstrip("/") or "/"


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def run_names(demo) -> frozenset[str]:
    """Names a direct `POST /gradio_api/run/<name>` may call: `predict` and the public unqueued Python events."""
    return frozenset({"predict"} | {f.api_name for f in demo.fns.values() if f.fn is not None and not f.queue
                                    and f.api_name and getattr(f, "api_visibility", "public") == "public"})


class HttpGuard:
    def __init__(self, app, max_body_bytes: int, run_names: frozenset[str] | None = None, demo=None,
                 admin_key: str | None = None) -> None:
        self.app, self.max_body_bytes, self.run_names, self.demo = app, max_body_bytes, run_names, demo
        self.admin_key = admin_key
        self.listeners = Listeners()
        self.watchdog = Watchdog(demo, self.listeners) if demo is not None else None
        if demo is not None:
            demo.job_watchdog = self.watchdog  # what the app's tests (and a debugger) look at

    def _needs_admin(self, scope: Scope) -> bool:
        """A monitoring route without the admin key (only when one is set; without one Gradio answers 403)."""
        if self.admin_key is None or _path(scope) not in MONITORING:
            return False
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-admin-key", b"").decode("latin-1").strip()
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return not hmac.compare_digest(given.encode(), self.admin_key.encode())

    # --- bad input Gradio would answer with a bare 500 or a broken stream (needs the demo) ---------------

    def _unknown_call(self, scope: Scope) -> str | None:
        """`POST /gradio_api/call[/v2]/<name>` for a name no event has."""
        if self.demo is None or scope.get("method") != "POST":
            return None
        parts = _path(scope).split("/")[1:]
        if parts[:2] == ["gradio_api", "call"] and len(parts) in (3, 4) and (len(parts) == 3 or parts[2] == "v2"):
            name = parts[-1]
            if name not in {f.api_name for f in self.demo.fns.values() if f.api_name}:
                return name
        return None

    def _stale_stream(self, scope: Scope) -> str | None:
        """An SSE stream for an event or session the queue does not hold (Gradio starts the stream, then fails)."""
        queue = getattr(self.demo, "_queue", None)
        if queue is None or scope.get("method") not in ("GET", "HEAD"):
            return None
        parts = _path(scope).split("/")[1:]
        if parts[:2] == ["gradio_api", "call"] and len(parts) in (4, 5) and (len(parts) == 4 or parts[2] == "v2"):
            event_id = parts[-1]
            event = queue.event_ids_to_events.get(event_id)
            session = event.session_hash if event is not None else next(
                (s for s, ids in list(queue.pending_event_ids_session.items()) if event_id in ids), None)
            if session is None or session not in queue.pending_messages_per_session:
                return (f"no event {_short(event_id)} here (finished and read, or never made): POST "
                        f"/gradio_api/call/{parts[-2]} first and read the event_id it answers")
        elif parts == ["gradio_api", "queue", "data"]:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            session = (query.get("session_hash") or [""])[0]
            if session not in queue.pending_messages_per_session:
                return (f"session_hash {_short(session)} has no queued event here: POST /gradio_api/queue/join with "
                        "it first")
        return None

    def _stream_session(self, scope: Scope) -> str | None:
        """The session whose results a GET streams (`/queue/data?session_hash=`, `/call/<name>/<event_id>`), or None."""
        queue = getattr(self.demo, "_queue", None)
        if queue is None or scope.get("method") != "GET":
            return None
        parts = _path(scope).split("/")[1:]
        if parts == ["gradio_api", "queue", "data"]:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            return (query.get("session_hash") or [None])[0]
        if parts[:2] == ["gradio_api", "call"] and len(parts) in (4, 5) and (len(parts) == 4 or parts[2] == "v2"):
            event = queue.event_ids_to_events.get(parts[-1])
            return event.session_hash if event is not None else next(
                (s for s, ids in list(queue.pending_event_ids_session.items()) if parts[-1] in ids), None)
        return None

    def _posted_fn(self, path: str, body: bytes | None) -> object | None:
        """The event a POST to `/call[/v2]/<name>` or `/queue/join` (its body's fn_index) would queue."""
        parts = path.split("/")[1:]
        if parts[:2] == ["gradio_api", "call"] and len(parts) in (3, 4):
            return next((f for f in self.demo.fns.values() if f.api_name == parts[-1]), None)
        if path == "/gradio_api/queue/join" and body is not None:
            try:
                fn_index = json.loads(body).get("fn_index")
            except (ValueError, AttributeError, UnicodeDecodeError):
                return None
            return self.demo.fns.get(fn_index) if isinstance(fn_index, int) and not isinstance(fn_index, bool) else None
        return None

    def _over_cap(self, scope: Scope, body: bytes | None) -> str | None:
        fn = self._posted_fn(_path(scope), body)
        if fn is None or not is_capped_job(fn):
            return None
        return cap_problem(getattr(self.demo, "_queue", None), client_host(scope))

    def _fn_index_problem(self, path: str, body: bytes) -> str | None:
        try:
            fn_index = json.loads(body).get("fn_index")
        except (ValueError, AttributeError, UnicodeDecodeError):
            return None  # Gradio's own validation answers 422 for a body that is not an object
        if not isinstance(fn_index, int) or isinstance(fn_index, bool):
            return None
        fns = self.demo.fns
        fn = fns.get(fn_index)
        if fn is None:
            return f"fn_index must name one of the app's events, in [{min(fns)}, {max(fns)}]; got {fn_index}"
        if path.endswith("/run/predict") and (fn.fn is None or fn.queue):
            what = "a step that runs in the browser" if fn.fn is None else "queued (join the queue)"
            return f"fn_index {fn_index} is {what}, not an event the page runs directly"
        return None

    async def _buffered(self, receive: Receive) -> tuple[bytes, Receive] | None:
        """The whole request body (within the cap; None over it) and a receive that replays it."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return body, replay

    @staticmethod
    def _explain(scope: Scope, err: BaseException) -> str:
        first = (str(err).strip().splitlines() or [""])[0]
        what = type(err).__name__ + (f": {first[:160]}" if first else "")
        return f"{scope.get('method')} {_path(scope)}: this request could not be handled ({what}); {INFO}"

    async def _json(self, send: Send, status: int, detail: str, headers: list | None = None) -> None:
        body = json.dumps({"detail": detail}).encode()
        kept = [(k, v) for k, v in headers or [] if k.lower() not in (b"content-type", b"content-length")]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *(kept or HEADERS)]})
        await send({"type": "http.response.body", "body": body})

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
        if self._needs_admin(scope):
            return await self._json(send, 401, f"{_path(scope)} needs the admin key (PLAYGROUND_ADMIN_KEY): send it as "
                                               "X-Admin-Key: <key> or Authorization: Bearer <key>")
        unknown = self._unknown_run(scope) or self._unknown_call(scope)
        if unknown is not None:
            return await self._not_found(send, unknown)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await self._refuse(send)
        stale = self._stale_stream(scope) if self.demo is not None else None
        if stale is not None:
            return await self._json(send, 404, stale)
        if self.demo is not None and scope.get("method") == "POST" and _path(scope) in FN_INDEX_ROUTES:
            buffered = await self._buffered(receive)
            if buffered is None:
                return await self._refuse(send)
            body, receive = buffered
            problem = self._fn_index_problem(_path(scope), body)
            if problem is not None:
                return await self._json(send, 404, problem)
            if (over := self._over_cap(scope, body)) is not None:
                return await self._json(send, 429, over)
        elif self.demo is not None and scope.get("method") == "POST" and (over := self._over_cap(scope, None)):
            return await self._json(send, 429, over)
        listening = self._stream_session(scope) if self.demo is not None else None
        if self.watchdog is not None:
            self.watchdog.ensure_running()
        if listening is not None:
            self.listeners.opened(listening)
            try:
                return await self._guarded(scope, receive, send)
            finally:
                self.listeners.closed(listening)
        return await self._guarded(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, with the body counted against the cap, the security headers added and Gradio's 500s explained."""
        seen = 0
        started = False  # a response start has gone to the client
        held: dict | None = None  # a 500 start, held until its body shows whether it says anything
        held_body = b""

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started, held, held_body
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []), *(h for h in HEADERS if h[0] not in names)]}
                if message.get("status") == 500:
                    held = message
                    return
                started = True
            elif message["type"] == "http.response.body" and held is not None:
                held_body += message.get("body", b"")
                if message.get("more_body"):
                    return
                started = True
                return await self._send_400(send, scope, held, held_body)
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)
        except Exception as err:  # noqa: BLE001 - a route's failure on odd input: 400 with a message
            if started:
                raise
            log.warning("%s", self._explain(scope, err))
            await self._json(send, 400, self._explain(scope, err))

    async def _send_400(self, send: Send, scope: Scope, start: dict, body: bytes) -> None:
        """A 500 a route built itself. Gradio's (`/gradio_api/...`) become 400: with their message when they had one,
        else one naming the route. A 500 elsewhere that says something (the /v1 API's own errors) passes as it is."""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            payload = None
        message = payload.get("error") or payload.get("detail") if isinstance(payload, dict) else None
        silent = not message and (payload is not None or body.strip() in (b"", b"Internal Server Error"))
        if not silent and not _path(scope).startswith("/gradio_api/"):
            await send({**start, "headers": start.get("headers", [])})
            return await send({"type": "http.response.body", "body": body})
        if not silent:
            names = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "status": 400, "headers": [*names, (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        what = ("the event could not run on this input (check the number and kinds of its inputs)"
                if _path(scope) in FN_INDEX_ROUTES or "/run/" in _path(scope) else "this request could not be handled")
        detail = f"{scope.get('method')} {_path(scope)}: {what}; {INFO}"
        await self._json(send, 400, detail, start.get("headers"))
