"""OpenAI-compatible routes on the app's own FastAPI server: GET /v1/models, POST /v1/chat/completions and
POST /v1/completions (docs/api.md).

`openai_routes(pg)` returns Starlette routes for Gradio's app (app.py passes them in `app_kwargs`), so the API is
served by the same process and port as the UI and decodes through the same `Playground`: its scheduler, queue
bounds, deadlines and input checks. Every /v1 route passes the bounded queue (`Gate`); a request is one scheduler
submission of its `n` choices, cancelled at the next step when the client goes away. With PLAYGROUND_API_KEY set,
/v1 requires `Authorization: Bearer <key>`.

Here: the routes and `OpenAIApi` (key check, queue and errors around each route; the models; a completion decoded
whole). Beside it: streaming.py (`stream: true` as server-sent events), responses.py (the OpenAI-shaped objects)
and threads.py (blocking work off the event loop).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
from functools import partial

from fastapi import APIRouter, Request
from starlette.responses import Response

from playground.api.config import API, BASE_MODEL, ApiSettings, api_key
from playground.api.decoding import Choice, Run, TokenText, prepare
from playground.api.errors import ApiError, from_scheduler, internal, invalid
from playground.api.gate import Gate, Ticket
from playground.api.responses import Meta
from playground.api.schemas import chat_job, split_model, text_job
from playground.api.streaming import SSEResponse, events, started
from playground.api.threads import disconnected, in_thread
from playground.chat.share import weights_sha256
from playground.settings.validation import InputError

log = logging.getLogger("playground.api")
OWNER = "controllability-playground"


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
            worker = await started(request, run)
            def closed() -> None:
                run.cancel()
                ticket.release()

            return SSEResponse(events(self.pg, run, meta, worker), on_close=closed)
        return await self.whole(request, run, meta)

    def token_text(self) -> TokenText:
        if self._token_text is None:
            self._token_text = TokenText(self.pg.base.tokenizer)
        return self._token_text

    async def whole(self, request: Request, run: Run, meta: Meta) -> Response:
        """Decode to the end (or the deadline, or a stop sequence in every choice); cancel if the client leaves."""
        choices = [Choice(self.pg, meta.job.stop) for _ in range(meta.job.n)]
        worker = in_thread(run.work)
        watcher = asyncio.ensure_future(disconnected(request))
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
