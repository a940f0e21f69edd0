"""Decoding-time realignment (DeRa; Liu et al., ICML 2024), batched, with per-row settings.

A model aligned with KL strength β_train approximates the one aligned at β = β_train/λ by mixing, at
every token, the next-token logits of the reference (base) policy and the aligned (tuned) policy:

    ℓ_λ = ℓ_base + λ · (ℓ_tuned − ℓ_base)          λ = β_train / β

λ = 0 is the base model, λ = 1 the tuned model, λ > 1 extrapolates (weaker KL). Both policies come from
the SAME batched forward pass: each request owns a base row (LoRA scale 0) and a tuned row (LoRA scale
1). Mode "weights" instead scales the LoRA delta by λ inside one row (ExPO-style weight extrapolation:
cheaper, not the KL-regularised optimum); its base row is kept for the KL readout. Every request carries
its own `DecodeSettings` (λ, temperature, top-p, length, seed), so one batch can hold a whole sweep grid.

The decode path is chosen when the engine is built (`Engine(..., path=...)`, or `engine.with_path(...)` for a
sibling on the same weights), never toggled later:

    "continuous"  `stream` runs through the engine's `Scheduler` (continuous batching: one decode loop, requests
                  join and leave between steps) on `FastLlamaDecoder`, for models it supports;
    "batch"       the requests of one call decode as one batch on `FastLlamaDecoder`, here (no scheduler);
    "generic"     the same on `HFDecoder` (any transformers causal LM, dense weights).

A model `FastLlamaDecoder` does not support decodes on the generic path whatever was asked. Either way a
request's tokens do not depend on what shares its batch. Calls go one way: the engine owns the scheduler
and hands it itself as a narrow `Runner` (forward, decoder factory, stop ids, adapter version); the
scheduler never imports this module. `Request` and `Stream` live in request.py.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
from playground.lm.batch import RunningBatch, policy_logits, realign, routes_of, row_prompts
from playground.lm.decoder import HFDecoder
from playground.lm.fast_llama import FastLlamaDecoder, supports
from playground.lm.int4 import Int4Layers
from playground.lm.lora import AdapterSet
from playground.lm.request import Request, Stream
from playground.lm.scheduler import Scheduler
from playground.settings.server import SCHEDULER, SchedulerSettings
from playground.runtime.threads import release_unless_loop, releases_pool

__all__ = ["PATHS", "Engine", "Request", "Stream", "realign"]

DecodePath = Literal["continuous", "batch", "generic"]
PATHS: tuple[str, ...] = ("continuous", "batch", "generic")  # see the module docstring


class _StaticRows:
    """HFDecoder behind the row protocol of `RunningBatch`: all rows join once; the adapter routing is placed
    on the modules around each forward. It has no `remove`: finished rows keep decoding, unrecorded."""

    def __init__(self, decoder: HFDecoder, engine: Engine) -> None:
        self.decoder, self.engine, self.routes = decoder, engine, []

    @property
    def rows(self) -> int:
        return len(self.routes)

    def add(self, prompts, routes, reach=None) -> torch.Tensor:
        assert not self.routes, "the generic decoder takes all rows at once"
        self.routes = list(routes)
        return self.engine.forward(lambda: self.decoder.start(prompts), self.routes)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.engine.forward(lambda: self.decoder.step(tokens), self.routes)


class Engine:
    """Owns one base model + its adapters; decodes batches of requests token by token on the path it was built with."""

    def __init__(self, model: torch.nn.Module, tokenizer, adapters: AdapterSet, stop_ids: Sequence[int],
                 int4: Int4Layers | None = None, path: DecodePath = "continuous",
                 scheduler_config: SchedulerSettings | None = None, refusal: type[Exception] = RuntimeError) -> None:
        if path not in PATHS:
            raise ValueError(f"unknown decode path {path!r}; one of {PATHS}")
        self.model, self.tokenizer, self.adapters = model, tokenizer, adapters
        self.int4 = int4  # the layers' Q4_1 weights for the int4 kernel (FastLlamaDecoder only); None = dense weights
        self.stop_ids = torch.tensor(sorted(set(stop_ids)), dtype=torch.long)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.lock = threading.RLock()  # one forward at a time on the shared weights (module routing lives inside it)
        self.path = path
        self.scheduler_config = scheduler_config  # None = settings.server.SCHEDULER (read when the scheduler starts)
        # What the scheduler raises when it refuses a submission (queue or client share full); the facade passes
        # its InputError so the refusal reaches the user as one message. The lm wing itself imports no input policy.
        self.refusal = refusal
        self._scheduler: Scheduler | None = None

    def with_path(self, path: DecodePath) -> Engine:
        """A sibling engine on the same weights, adapters and lock that decodes on `path` (benchmarks, tests)."""
        other = Engine(self.model, self.tokenizer, self.adapters, self.stop_ids.tolist(), self.int4, path,
                       self.scheduler_config, self.refusal)
        other.lock = self.lock
        return other

    def new_decoder(self, widths: Sequence[int] | None = None):
        """The slot-cache decoder for Llama-family models (KV width classes `widths`, default kv_pools'); the generic
        transformers path otherwise."""
        if self.uses_fast_decoder:
            kw = {} if widths is None else {"widths": tuple(widths)}
            return FastLlamaDecoder(self.model, self.pad_id, int4=self.int4, **kw)
        return HFDecoder(self.model, self.pad_id)

    @property
    def uses_fast_decoder(self) -> bool:
        return self.path != "generic" and supports(self.model)

    @property
    def continuous(self) -> bool:
        """Whether `stream` goes through the scheduler (read-only: the path is fixed when the engine is built)."""
        return self.path == "continuous" and self.uses_fast_decoder

    @property
    def adapter_version(self) -> int:
        """Changes whenever adapters are added (a running decoder is rebuilt then)."""
        return self.adapters.version

    def check_adapter(self, name: str | None) -> None:
        """KeyError for an adapter that is not loaded (None = the base model)."""
        if name is not None and name not in self.adapters.specs:
            raise KeyError(f"unknown adapter {name!r}; loaded: {sorted(self.adapters.specs)}")

    @property
    def weights(self) -> str:
        """The weight path decoding runs on: "int4" (the GGUF's Q4_1 blocks), "bfloat16" or "float32"."""
        if self.int4 is not None and self.uses_fast_decoder:
            return "int4"
        return str(self.model.dtype).removeprefix("torch.")

    def forward(self, call: Callable[[], torch.Tensor], routes=None) -> torch.Tensor:
        """One forward under the shared lock (and, for the generic decoder, with its adapter routing)."""
        with self.lock, torch.inference_mode():
            if routes is None:
                return call()
            with self.adapters.routing(routes):
                return call()

    @property
    def scheduler(self):
        """The continuous-batching scheduler, started on first use."""
        if self._scheduler is None or not self._scheduler.running:
            with self.lock:
                if self._scheduler is None or not self._scheduler.running:
                    self._scheduler = Scheduler(self, self.scheduler_config or SCHEDULER)
        return self._scheduler

    def stream(self, requests: Sequence[Request], should_stop: Callable[[], bool] = lambda: False,
               client: str | None = None, deadline: float | None = None) -> Iterator[list[Stream]]:
        """Yield the requests' streams after every decoding step until all are done or `should_stop()`.

        Through the scheduler, updates may be coalesced (each yield is the latest state); `client` caps
        concurrent submissions per client and `deadline` (time.monotonic()) ends the submission."""
        if not requests:
            return iter(())
        if self.continuous:
            return self.scheduler.stream(requests, should_stop, client=client, deadline=deadline)
        return self._stream_direct(requests, should_stop, deadline)

    def _stream_direct(self, requests, should_stop, deadline) -> Iterator[list[Stream]]:
        """All requests as one batch, decoded here (no scheduler); rows leave as they finish."""
        decoder = self.new_decoder()
        fast = isinstance(decoder, FastLlamaDecoder)
        batch = RunningBatch(decoder if fast else _StaticRows(decoder, self))
        streams = [Stream() for _ in requests]
        try:
            if fast:
                self.forward(lambda: batch.join(requests, streams))
            else:
                batch.join(requests, streams)
            while True:
                finished = batch.sample(self.stop_ids)
                yield streams
                stop = should_stop() or (deadline is not None and time.monotonic() > deadline)
                if batch.all_done() or stop:
                    return
                batch.leave(finished)
                self.forward(batch.advance) if fast else batch.advance()
        finally:
            release_unless_loop()  # the thread that ran the last step keeps no OpenMP pool (playground/runtime/threads.py)

    def generate(self, requests: Sequence[Request]) -> list[Stream]:
        streams: list[Stream] = []
        for streams in self.stream(requests):
            pass
        return streams

    @releases_pool  # decodes in the caller's thread, which keeps no OpenMP pool afterwards (playground/runtime/threads.py)
    def step_logits(self, requests: Sequence[Request], continuation: Sequence[int]) -> list[torch.Tensor]:
        """Realigned logits ℓ_λ at each position of a fixed continuation (teacher forcing); for tests/metrics."""
        decoder = self.new_decoder()
        fast = isinstance(decoder, FastLlamaDecoder)
        rows = [routes_of(r) for r in requests]
        routes = [x for r in rows for x in r]
        prompts = [p for req in requests for p in row_prompts(req)]
        starts = [sum(len(r) for r in rows[:i]) for i in range(len(rows))]
        index = [list(range(s, s + len(r))) for s, r in zip(starts, rows)]

        def run(call):
            return self.forward(call) if fast else self.forward(call, routes)

        out = []
        logits = run(lambda: decoder.add(prompts, routes) if fast else decoder.start(prompts))
        for tok in [None, *continuation]:
            if tok is not None:
                logits = run(lambda: decoder.step(torch.full((len(routes),), tok, dtype=torch.long)))
            out.append(policy_logits(logits, index, requests)[0])
        return out
