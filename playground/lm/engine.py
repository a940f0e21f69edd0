"""Decoding-time realignment (DeRa; Liu et al., ICML 2024), batched, with per-row settings.

A model aligned with KL strength β_train approximates the one aligned at β = β_train/λ by mixing, at
every token, the next-token logits of the reference (base) policy and the aligned (tuned) policy:

    ℓ_λ = ℓ_base + λ · (ℓ_tuned − ℓ_base)          λ = β_train / β

λ = 0 is the base model, λ = 1 the tuned model, λ > 1 extrapolates (weaker KL). Both policies come from
the SAME batched forward pass: each request owns a base row (LoRA scale 0) and a tuned row (LoRA scale
1). Mode "weights" instead scales the LoRA delta by λ inside one row (ExPO-style weight extrapolation:
cheaper, not the KL-regularised optimum); its base row is kept for the KL readout. Every request carries
its own λ, temperature, top-p, length and seed, so one batch can hold a whole sweep grid.

`Engine.stream` runs through the engine's `Scheduler` (continuous batching: one decode loop, requests
join and leave between steps) for models `FastLlamaDecoder` supports, and decodes the requests as one
static batch otherwise. Either way a request's tokens do not depend on what shares its batch.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Iterator, Sequence

import torch
from playground.lm.batch import RunningBatch, policy_logits, realign, routes_of, row_prompts
from playground.lm.decoder import HFDecoder
from playground.lm.fast_llama import FastLlamaDecoder, supports
from playground.lm.int4 import Int4Layers
from playground.lm.lora import AdapterSet
from playground.settings.server import SCHEDULER
from playground.runtime.threads import release_unless_loop, releases_pool

__all__ = ["Engine", "Request", "Stream", "realign"]


@dataclass(frozen=True)
class Request:
    """One stream to decode. `adapter=None` (or λ = 0 in logits mode) decodes the base model alone."""

    prompt_ids: tuple[int, ...]
    adapter: str | None = None
    lam: float = 1.0  # λ = β_train / β
    mode: str = "logits"  # "logits" (DeRa) or "weights" (LoRA scale = λ)
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0
    # None: no log-probabilities; k >= 0: each token's log-probability under the distribution it was drawn
    # from, with the k most likely tokens of that distribution (batch.token_logprobs). Never changes the tokens.
    logprobs: int | None = None
    # Prompt guidance (LM classifier-free guidance): ℓ = ℓ_uncond + γ(ℓ_cond − ℓ_uncond), each branch the same
    # (λ-realigned) policy; the unconditional branch reads `uncond_prompt_ids` (the chat template without the
    # user's text, or with a negative prompt). γ = 1: the plain model, no extra rows; γ = 0: the unconditional one.
    cfg_scale: float = 1.0
    uncond_prompt_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.cfg_scale != 1.0 and not self.uncond_prompt_ids:
            raise ValueError("a prompt-guided request (cfg_scale ≠ 1) needs uncond_prompt_ids")


@dataclass
class Stream:
    """What one request produced so far."""

    tokens: list[int] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)  # KL(π_λ ‖ π_base) per position, nats, at T = 1
    entropy: list[float] = field(default_factory=list)  # entropy of the distribution actually sampled from
    shifted: list[bool] = field(default_factory=list)  # base model's top token ≠ realigned top token
    # Per position when the request asked (Request.logprobs): (log π(token), [(id, log π(id)), ...] top k).
    logprobs: list[tuple[float, list[tuple[int, float]]]] = field(default_factory=list)
    done: bool = False
    first_token_s: float | None = None  # seconds from submission (queueing included) to the first token
    elapsed_s: float = 0.0

    @property
    def kl_sum(self) -> float:
        return float(sum(self.kl))

    @property
    def kl_mean(self) -> float:
        return self.kl_sum / len(self.kl) if self.kl else 0.0

    @property
    def entropy_mean(self) -> float:
        return float(sum(self.entropy) / len(self.entropy)) if self.entropy else 0.0

    def copy(self) -> Stream:
        return Stream(list(self.tokens), list(self.kl), list(self.entropy), list(self.shifted), list(self.logprobs),
                      self.done, self.first_token_s, self.elapsed_s)


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
    """Owns one base model + its adapters; decodes batches of requests token by token."""

    def __init__(self, model: torch.nn.Module, tokenizer, adapters: AdapterSet, stop_ids: Sequence[int],
                 int4: Int4Layers | None = None) -> None:
        self.model, self.tokenizer, self.adapters = model, tokenizer, adapters
        self.int4 = int4  # the layers' Q4_1 weights for the int4 kernel (FastLlamaDecoder only); None = dense weights
        self.stop_ids = torch.tensor(sorted(set(stop_ids)), dtype=torch.long)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.lock = threading.RLock()  # one forward at a time on the shared weights (module routing lives inside it)
        self.fast = True  # use FastLlamaDecoder where it applies (benchmarks switch it off to compare)
        self.continuous = True  # route `stream` through the scheduler (continuous batching) where the fast decoder applies
        self.scheduler_config = None  # a settings.SchedulerSettings; None = settings.SCHEDULER (read when the scheduler starts)
        self._scheduler = None

    def new_decoder(self):
        """The slot-cache decoder for Llama-family models; the generic transformers path otherwise."""
        if self.uses_fast_decoder:
            return FastLlamaDecoder(self.model, self.pad_id, int4=self.int4)
        return HFDecoder(self.model, self.pad_id)

    @property
    def uses_fast_decoder(self) -> bool:
        return self.fast and supports(self.model)

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
            from playground.lm.scheduler import Scheduler

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
        if self.continuous and self.uses_fast_decoder:
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
