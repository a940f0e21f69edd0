"""OpenAI-compatible routes on the app's own FastAPI server: GET /v1/models, POST /v1/chat/completions and
POST /v1/completions (docs/api.md).

`openai_routes(pg)` returns Starlette routes for Gradio's app (app.py passes them in `app_kwargs`), so the API is
served by the same process and port as the UI and decodes through the same `Playground`: its scheduler, queue
bounds, deadlines and input checks. Every /v1 route passes the bounded queue (`Gate`); a request is one scheduler
submission of its `n` choices, cancelled at the next step when the client goes away. With PLAYGROUND_API_KEY set,
/v1 requires `Authorization: Bearer <key>`.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import threading
import time
from functools import partial
from pathlib import Path

import anyio
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from playground.api.config import API, BASE_MODEL, ApiSettings, api_key
from playground.api.decoding import Choice, Run, TokenText, prepare
from playground.api.errors import ApiError, from_scheduler, internal, invalid
from playground.api.gate import Gate, Ticket
from playground.api.schemas import Job, chat_job, split_model, text_job
from playground.chat.share import weights_sha256
from playground.settings.validation import InputError

log = logging.getLogger("playground.api")
OWNER = "controllability-playground"


class SSEResponse(StreamingResponse):
    """Server-sent events that stop as soon as the client disconnects, whatever the ASGI spec version (Starlette
    listens for the disconnect only below 2.4): the body's `finally` then cancels the decoding."""

    def __init__(self, content, on_close) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            async with anyio.create_task_group() as tg:
                async def body() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:  # the client went away mid-send
                        pass
                    tg.cancel_scope.cancel()

                async def disconnect() -> None:
                    await self.listen_for_disconnect(receive)
                    tg.cancel_scope.cancel()

                tg.start_soon(body)
                tg.start_soon(disconnect)
        finally:
            self.on_close()


def sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


class OpenAIApi:
    def __init__(self, pg, settings: ApiSettings = API) -> None:
        self.pg, self.settings = pg, settings
        self.gate = Gate(settings.max_active, settings.max_waiting, settings.per_client, settings.timeout_s)
        self._token_text: TokenText | None = None

    # --- plumbing ------------------------------------------------------------------------------------
    def client_key(self, request: Request) -> str:
        """The client's address (the first X-Forwarded-For hop behind a proxy, as on a Space)."""
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        return forwarded or (request.client.host if request.client else "unknown")

    def check_key(self, request: Request) -> None:
        key = api_key()
        if key is None:
            return
        got = request.headers.get("authorization", "")
        scheme, _, token = got.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise ApiError(401, "this server requires an API key: send Authorization: Bearer <PLAYGROUND_API_KEY>"
                           if not got else "the API key is not valid", code="invalid_api_key")

    async def blocking(self, fn, *args):
        return await in_thread(fn, *args)

    async def guarded(self, request: Request, handler) -> Response:
        """Key check, the bounded queue, and OpenAI-shaped errors around one route (never a stack trace)."""
        ticket: Ticket | None = None
        try:
            self.check_key(request)
            ticket = await self.gate.enter(self.client_key(request))
            response = await handler(request, ticket)
            if isinstance(response, SSEResponse):
                ticket = None  # the stream releases it when it ends
            return response
        except ApiError as err:
            return err.response()
        except InputError as err:
            mapped = from_scheduler(err)
            return (mapped or invalid(str(err), None)).response()
        except Exception as err:  # noqa: BLE001
            log.exception("/v1 request failed")
            return internal(err).response()
        finally:
            if ticket is not None:
                ticket.release()

    async def body(self, request: Request) -> dict:
        raw = await request.body()
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as err:
            raise invalid(f"the request body is not valid JSON ({type(err).__name__}: {str(err)[:80]})", None) from None
        if not isinstance(body, dict):
            raise invalid("the request body must be a JSON object", None)
        return body

    # --- models --------------------------------------------------------------------------------------
    def model_card(self, name: str) -> dict:
        card = {"id": name, "object": "model", "created": 0, "owned_by": OWNER}
        if name == BASE_MODEL:
            card["playground"] = {"policy": "base model (λ = 0)"}
        else:
            a = self.pg.adapters[name]
            card["playground"] = {"policy": "realigned: ℓ = ℓ_base + λ(ℓ_tuned − ℓ_base)", "beta_train": a.beta_train,
                                  "judge": a.judge, "description": getattr(a, "description", ""),
                                  "default_lambda": self.settings.default_lambda}
        return card

    async def list_models(self, request: Request) -> Response:
        async def handler(request, ticket):
            names = [BASE_MODEL, *sorted(self.pg.adapters)]
            return Response(json.dumps({"object": "list", "data": [self.model_card(n) for n in names]}, ensure_ascii=False),
                            media_type="application/json")
        return await self.guarded(request, handler)

    async def get_model(self, request: Request) -> Response:
        async def handler(request, ticket):
            requested = request.path_params["model"]
            name, _ = split_model({"model": requested})
            if name != BASE_MODEL and name not in self.pg.adapters:
                raise ApiError(404, f"the model {name[:60]!r} does not exist; GET /v1/models lists them", param="model",
                               code="model_not_found")
            card = {**self.model_card(name), "id": requested}
            return Response(json.dumps(card, ensure_ascii=False), media_type="application/json")
        return await self.guarded(request, handler)

    async def not_found(self, request: Request) -> Response:
        async def handler(request, ticket):
            raise ApiError(404, f"no route {request.method} {request.url.path[:80]} here; this server has GET /v1/models, "
                           "POST /v1/chat/completions and POST /v1/completions", code="unknown_url")
        return await self.guarded(request, handler)

    # --- completions ---------------------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        return await self.guarded(request, partial(self.complete, chat_job))

    async def text(self, request: Request) -> Response:
        return await self.guarded(request, partial(self.complete, text_job))

    async def complete(self, parse, request: Request, ticket: Ticket) -> Response:
        job = parse(await self.body(request), self.pg.adapters)
        try:
            ids, reqs = await self.blocking(prepare, self.pg, job)
        except InputError as err:
            raise from_scheduler(err) or invalid(str(err), "messages" if job.kind == "chat" else "prompt") from None
        sha = (await self.blocking(weights_sha256, self.pg.adapters[job.adapter].path) or None) if job.adapter else None
        tokens = await self.blocking(self.token_text) if job.logprobs is not None else None
        run = Run(self.pg, reqs, self.settings.timeout_s, asyncio.get_running_loop())
        meta = Meta(job, len(ids), sha, tokens)
        if job.stream:
            worker = await self.started(request, run)
            def closed() -> None:
                run.cancel()
                ticket.release()

            return SSEResponse(self.events(run, meta, worker), on_close=closed)
        return await self.whole(request, run, meta)

    async def started(self, request: Request, run: Run) -> asyncio.Future:
        """Start decoding and wait for its first step before the stream's 200 goes out, so that a refusal by the
        scheduler (busy) is still a 429 with Retry-After, not an error event; a client that leaves meanwhile cancels."""
        worker = in_thread(run.work)
        watcher = asyncio.ensure_future(_disconnected(request))
        begun = asyncio.ensure_future(run.begun.wait())
        try:
            await asyncio.wait([watcher, begun], return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            begun.cancel()
        if not run.begun.is_set():  # the client left first
            run.cancel()
            await asyncio.shield(worker)
            raise ApiError(499, "the client closed the connection", code="client_closed")
        if run.ended and run.error is not None:
            await asyncio.shield(worker)
            err = run.error
            raise (from_scheduler(err) if isinstance(err, InputError) else None) or err
        return worker

    def token_text(self) -> TokenText:
        if self._token_text is None:
            self._token_text = TokenText(self.pg.base.tokenizer)
        return self._token_text

    async def whole(self, request: Request, run: Run, meta: "Meta") -> Response:
        """Decode to the end (or the deadline, or a stop sequence in every choice); cancel if the client leaves."""
        choices = [Choice(self.pg, meta.job.stop) for _ in range(meta.job.n)]
        worker = in_thread(run.work)
        watcher = asyncio.ensure_future(_disconnected(request))
        watcher.add_done_callback(lambda f: run.cancel() if not f.cancelled() else None)
        streams: list = []
        try:
            async for streams in run.updates():
                for c, s in zip(choices, streams):
                    c.feed(s)
                if all(c.finished for c in choices):
                    run.cancel()
        except InputError as err:
            raise from_scheduler(err) or invalid(str(err), None) from None
        finally:
            watcher.cancel()
            run.cancel()
            await asyncio.shield(worker)
        for c in choices:
            c.close()
        return Response(json.dumps(meta.whole(choices, streams, run), ensure_ascii=False), media_type="application/json")

    async def events(self, run: Run, meta: "Meta", worker: asyncio.Future):
        """The SSE body: a role chunk, text deltas (with their log-probabilities), finish chunks, usage, [DONE]."""
        job = meta.job
        choices = [Choice(self.pg, job.stop) for _ in range(job.n)]
        streams: list = []
        try:
            if job.kind == "chat":
                yield sse(meta.chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                       "finish_reason": None} for i in range(job.n)]))
            done = False  # the chunk that ends the last choice carries the `playground` readouts
            try:
                async for streams in run.updates():
                    parts = []
                    for i, (c, s) in enumerate(zip(choices, streams)):
                        was = c.finished
                        c.feed(s)
                        text, toks = c.delta()
                        ended = c.finished and not was
                        if text or toks or ended:
                            parts.append(meta.delta(i, text, toks, s, c.finish if ended else None))
                    if parts and not done:
                        done = all(c.finished for c in choices)
                        yield sse(meta.chunk(parts, playground=meta.readouts(choices, streams, run) if done else None))
                    if done:
                        run.cancel()
            except Exception as err:  # noqa: BLE001 - the status line is sent: the error travels as an event
                e = from_scheduler(err) if isinstance(err, InputError) else None
                if e is None:
                    log.exception("/v1 stream failed")
                    e = internal(err)
                yield sse(e.body())
                yield sse("[DONE]")
                return
            if not done:  # decoding ended first (the deadline): the open choices end with what they have
                parts = []
                for i, (c, s) in enumerate(zip(choices, streams or [None] * job.n)):
                    if not c.finished:
                        c.close()
                        text, toks = c.delta()
                        parts.append(meta.delta(i, text, toks, s, c.finish))
                yield sse(meta.chunk(parts, playground=meta.readouts(choices, streams, run)))
            if job.include_usage:
                yield sse(meta.chunk([], usage=meta.usage(choices)))
            yield sse("[DONE]")
        finally:
            run.cancel()
            await asyncio.shield(worker)


def in_thread(fn, *args) -> asyncio.Future:
    """Run blocking work (tokenizing, waiting for the model, a decode loop) in a daemon thread of its own: the gate
    bounds how many there are, and none keeps the interpreter from exiting (nor takes Gradio's worker threads)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result, error) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def body() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as err:  # noqa: BLE001 - handed to the awaiting request
            result, error = None, err
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the server's loop closed meanwhile (shutdown): nobody waits any more
            pass

    threading.Thread(target=body, daemon=True, name="v1-worker").start()
    return future


async def _disconnected(request: Request) -> None:
    """Returns when the client closed the connection (the body was read already, so only a disconnect arrives)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class Meta:
    """Builds the OpenAI-shaped objects of one job."""

    def __init__(self, job: Job, prompt_tokens: int, sha: str | None, tokens: TokenText | None) -> None:
        self.job, self.prompt_tokens, self.sha, self.tokens = job, prompt_tokens, sha, tokens
        self.id = ("chatcmpl-" if job.kind == "chat" else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())

    @property
    def object(self) -> str:
        return "chat.completion" if self.job.kind == "chat" else "text_completion"

    def settings(self) -> dict:
        j, d = self.job, self.job.decode
        beta = j.beta
        return {"model": j.model, "adapter": j.adapter, "adapter_sha256": self.sha, "beta_train": j.beta_train,
                "lambda": d.lam, "kl_strength": None if beta is None or beta == float("inf") else beta,
                "mode": d.mode, "temperature": d.temperature, "top_p": d.top_p, "max_tokens": d.max_new_tokens,
                "seed": d.seed, "n": j.n, "stop": list(j.stop)}

    def readouts(self, choices: list[Choice], streams: list, run: Run) -> dict:
        """The `playground` extension: the settings that reproduce the answers and each choice's readouts."""
        per = []
        for i, c in enumerate(choices):
            s = streams[i] if streams else None
            m = c.consumed
            kl = list(s.kl[:m]) if s else []
            ent = list(s.entropy[:m]) if s else []
            per.append({"index": i, "seed": self.job.choice(i).seed, "tokens": m,
                        "kl_to_base": sum(kl) / len(kl) if kl else 0.0, "kl_to_base_sum": float(sum(kl)),
                        "entropy": sum(ent) / len(ent) if ent else 0.0,
                        "tokens_per_s": (m / s.elapsed_s) if s and s.elapsed_s > 0 else 0.0,
                        "first_token_s": s.first_token_s if s else None,
                        "timed_out": run.timed_out and not (s and s.done)})
        mean = lambda key: sum(p[key] for p in per) / len(per) if per else 0.0  # noqa: E731
        return {**self.settings(), "kl_to_base": mean("kl_to_base"), "entropy": mean("entropy"), "choices": per}

    def usage(self, choices: list[Choice]) -> dict:
        completion = sum(c.consumed for c in choices)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}

    def _logprob_entries(self, stream, indices: list[int]) -> list[dict]:
        t = self.tokens
        out = []
        for j in indices:
            if stream is None or j >= len(stream.logprobs):
                continue
            lp, top = stream.logprobs[j]
            tok = stream.tokens[j]
            out.append({"token": t.text(tok), "logprob": lp, "bytes": list(t.bytes(tok)),
                        "top_logprobs": [{"token": t.text(a), "logprob": b, "bytes": list(t.bytes(a))} for a, b in top]})
        return out

    def logprobs(self, stream, indices: list[int], offset: int = 0) -> dict | None:
        if self.job.logprobs is None:
            return None
        entries = self._logprob_entries(stream, indices)
        if self.job.kind == "chat":
            return {"content": entries, "refusal": None}
        offsets, at = [], offset
        for e in entries:
            offsets.append(at)
            at += len(e["token"])
        return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": [{a["token"]: a["logprob"] for a in e["top_logprobs"]} for e in entries],
                "text_offset": offsets}

    def delta(self, i: int, text: str, tokens: list[int], stream, finish: str | None) -> dict:
        if self.job.kind == "chat":
            return {"index": i, "delta": {"content": text} if text or finish is None else {},
                    "logprobs": self.logprobs(stream, tokens) if tokens else None, "finish_reason": finish}
        return {"index": i, "text": text, "logprobs": self.logprobs(stream, tokens) if tokens else None,
                "finish_reason": finish}

    def chunk(self, choices: list[dict], usage: dict | None = None, playground: dict | None = None) -> dict:
        out = {"id": self.id, "object": self.object + ".chunk" if self.job.kind == "chat" else self.object,
               "created": self.created, "model": self.job.model, "system_fingerprint": None, "choices": choices}
        if usage is not None:
            out["usage"] = usage
        if playground is not None:
            out["playground"] = playground
        return out

    def whole(self, choices: list[Choice], streams: list, run: Run) -> dict:
        out = []
        for i, c in enumerate(choices):
            s = streams[i] if streams else None
            lp = self.logprobs(s, list(range(c.token_count)))
            if self.job.kind == "chat":
                out.append({"index": i, "message": {"role": "assistant", "content": c.text, "refusal": None},
                            "logprobs": lp, "finish_reason": c.finish})
            else:
                out.append({"index": i, "text": c.text, "logprobs": lp, "finish_reason": c.finish})
        return {"id": self.id, "object": self.object, "created": self.created, "model": self.job.model,
                "system_fingerprint": None, "choices": out, "usage": self.usage(choices),
                "playground": self.readouts(choices, streams, run)}


def openai_routes(pg, settings: ApiSettings = API) -> list:
    """The /v1 routes for `pg` (a Playground, or a LazyPlayground still loading), to put in Gradio's app."""
    api = OpenAIApi(pg, settings)
    router = APIRouter()
    router.add_api_route("/v1/models", api.list_models, methods=["GET"], include_in_schema=False)
    router.add_api_route("/v1/models/{model:path}", api.get_model, methods=["GET"], include_in_schema=False)
    router.add_api_route("/v1/chat/completions", api.chat, methods=["POST"], include_in_schema=False)
    router.add_api_route("/v1/completions", api.text, methods=["POST"], include_in_schema=False)
    router.add_api_route("/v1/{rest:path}", api.not_found, include_in_schema=False,
                         methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    return list(router.routes)
