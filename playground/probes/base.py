"""The probe framework: rows to decode, what came back, and a result with 95% intervals per λ.

A probe is a prompt set (a JSON file in `playground/probes/data/` with its provenance), a metric and the
direction a user should expect. It knows nothing about the engine:

    probe = get_probe("answers_question")
    result = run_probe(probe, ProbeSettings(lambdas=(0, 1, 2), samples=2), generate, ProbeContext())

`probe.rows(settings)` lists every (prompt, λ, sample) row; `generate(rows)` decodes them **in one batch**
and returns one `Generated` per row, in order; `probe.measure(generated, ctx, settings)` turns the answers
into a `ProbeResult` (settings carry the λ grid and its reference, which a probe without rows needs too).
A multi-stage probe (sycophancy: the follow-up question needs the first answer) returns its second stage
from `probe.follow_up(generated, settings)`; `run_probe` then calls `generate` a second time, again once
for all of that stage's rows. A probe that needs no generation (judge bias) returns no
rows and `generate` is not called.

What a probe returns (`ProbeResult`, its `MetricRow`s and `Example`s) lives in playground/probes/result.py; the
interval helpers probes measure with (`per_lambda`, `share_interval`, `trend`, …) in playground/probes/statistics.py.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from playground.intervals import DEFAULT_BOOTSTRAP
from playground.probes.result import Example, MetricRow, MetricSpec, ProbeResult
from playground.settings.request import DEFAULT_DECODE

DATA_DIR = Path(__file__).resolve().parent / "data"
Message = dict[str, str]


def load_data(name: str) -> dict[str, Any]:
    """A probe data file `playground/probes/data/<name>.json` (each has a `provenance` field)."""
    path = DATA_DIR / f"{name}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if not str(data.get("provenance", "")).strip():
        raise ValueError(f"{path} has no provenance: say who wrote it and how it was checked")
    return data


def user(text: str) -> list[Message]:
    """A one-turn chat: [{"role": "user", "content": text}]."""
    return [{"role": "user", "content": text}]


@dataclass(frozen=True)
class ProbeRow:
    """One decode: a chat (`messages`) continued by the model at mixing weight `lam` for sample `sample`.

    `prompt_id` is the cluster key of the statistics (the same prompt at every λ and sample); `seed` is the
    same for a (prompt, sample) at every λ (common random numbers make the paired comparison tighter);
    `meta` is the probe's own bookkeeping (gold answer, language, variant, stage, …).
    """

    prompt_id: str
    messages: list[Message]
    lam: float
    sample: int
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The last user message: what the answer should address."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return m.get("content", "")
        return ""


@dataclass
class Generated:
    """A decoded row: the answer text, its token count and mean per-token KL(π_λ ‖ π_base) (None if unknown)."""

    row: ProbeRow
    text: str
    tokens: int = 0
    kl_to_base: float | None = None


@dataclass(frozen=True)
class ProbeSettings:
    """What every probe row is decoded with. `limit` keeps the first N prompts of each prompt set (a quick run)."""

    lambdas: tuple[float, ...] = (0.0, 1.0, 2.0)
    samples: int = 2
    temperature: float = DEFAULT_DECODE.temperature
    max_new_tokens: int = 64
    seed: int = 0
    adapter: str | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        lams = tuple(float(x) for x in self.lambdas)
        if not lams:
            raise ValueError("lambdas must list at least one λ")
        if not all(math.isfinite(x) for x in lams):
            raise ValueError(f"lambdas must be finite numbers; got {self.lambdas!r}")
        if len(set(lams)) != len(lams):
            raise ValueError(f"lambdas must not repeat; got {self.lambdas!r}")
        object.__setattr__(self, "lambdas", lams)
        if int(self.samples) < 1:
            raise ValueError(f"samples must be ≥ 1; got {self.samples}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be ≥ 0 (0 = greedy); got {self.temperature}")
        if int(self.max_new_tokens) < 1:
            raise ValueError(f"max_new_tokens must be ≥ 1; got {self.max_new_tokens}")
        if self.limit is not None and int(self.limit) < 1:
            raise ValueError(f"limit must be ≥ 1 or None; got {self.limit}")

    @property
    def reference_lambda(self) -> float:
        """The λ every other λ is compared with: 0 (the base model) when present, else the smallest λ."""
        return 0.0 if 0.0 in self.lambdas else min(self.lambdas)

    def take(self, items: Sequence[Any]) -> list[Any]:
        """The first `limit` items (all when limit is None)."""
        return list(items if self.limit is None else items[: int(self.limit)])

    def grid(self, prompt_id: str, messages: list[Message], meta: dict[str, Any] | None = None) -> list[ProbeRow]:
        """The rows of one prompt: every λ × sample."""
        return [ProbeRow(prompt_id, messages, lam, s, self.seed + s, dict(meta or {}))
                for lam in self.lambdas for s in range(int(self.samples))]

    def to_json(self) -> dict[str, Any]:
        return {"lambdas": list(self.lambdas), "samples": int(self.samples), "temperature": float(self.temperature),
                "max_new_tokens": int(self.max_new_tokens), "seed": int(self.seed), "adapter": self.adapter,
                "limit": self.limit, "reference_lambda": self.reference_lambda}


@dataclass
class ProbeContext:
    """What `measure` may call, each injectable (tests pass fakes); None = the shipped default, loaded lazily.

    - `embed(texts) -> float array [n, d]`: sentence embeddings (default: the bundled all-MiniLM-L6-v2).
    - `judge(name) -> object with .score(prompts, responses) -> array` (default: the playground's judges).
    - `judges`: the judges a probe reports on (built-ins and any "hf:<reward model>" a user loaded).
    - `adapter_judge`: the judge the adapter was trained on (its card's `judge`), reported next to the probe's
      own metric where the issue asks for it (answers-question: reward rising while on-topic share falls).
    - `langid(text) -> ISO 639-1 code` (default: `metrics.language_of`, langid.py).
    """

    embed: Callable[[list[str]], np.ndarray] | None = None
    judge: Callable[[str], Any] | None = None
    judges: tuple[str, ...] = ("upbeat", "concise")
    adapter_judge: str | None = None
    langid: Callable[[str], str] | None = None
    n_boot: int = DEFAULT_BOOTSTRAP
    seed: int = 0
    examples_per_lambda: int = 3
    cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def get_embed(self) -> Callable[[list[str]], np.ndarray]:
        if self.embed is None:
            try:
                from playground.judges.embeddings import get_embedder
            except ImportError:  # before the playground/judges/ package existed
                from playground.embeddings import get_embedder  # type: ignore[no-redef]
            self.embed = get_embedder().encode
        return self.embed

    def get_judge(self, name: str) -> Any:
        if self.judge is None:
            try:
                from playground.judges.judges import get_judge
            except ImportError:
                from playground.judges import get_judge  # type: ignore[no-redef,attr-defined]
            self.judge = get_judge
        return self.judge(name)

    def get_langid(self) -> Callable[[str], str]:
        if self.langid is None:
            from playground.probes.metrics import language_of

            self.langid = language_of
        return self.langid


@runtime_checkable
class Probe(Protocol):
    """What `run_probe` needs from a probe."""

    name: str
    title: str
    description: str  # one sentence: what it measures and which way is worse

    def rows(self, settings: ProbeSettings) -> list[ProbeRow]: ...

    def follow_up(self, generated: list[Generated], settings: ProbeSettings) -> list[ProbeRow]: ...

    def measure(self, generated: list[Generated], ctx: ProbeContext, settings: ProbeSettings) -> ProbeResult: ...


class BaseProbe:
    """Defaults for a one-stage probe; subclasses set name/title/description/metrics and rows/measure."""

    name = ""
    title = ""
    description = ""
    metrics: tuple[MetricSpec, ...] = ()
    needs: tuple[str, ...] = ()  # what of the ProbeContext `measure` calls: "embed", "judge", "langid"

    def rows(self, settings: ProbeSettings) -> list[ProbeRow]:
        raise NotImplementedError

    def follow_up(self, generated: list[Generated], settings: ProbeSettings) -> list[ProbeRow]:
        return []

    def measure(self, generated: list[Generated], ctx: ProbeContext, settings: ProbeSettings) -> ProbeResult:
        raise NotImplementedError

    def result(self, rows: list[MetricRow], settings: ProbeSettings, examples: list[Example] | None = None,
               findings: list[str] | None = None, extra: dict[str, Any] | None = None) -> ProbeResult:
        return ProbeResult(self.name, self.title, self.description, list(self.metrics), rows, examples or [],
                           findings or [], settings, settings.reference_lambda, extra or {})


def _check_generated(rows: list[ProbeRow], out: Iterable[Any]) -> list[Generated]:
    out = list(out)
    if len(out) != len(rows):
        raise ValueError(f"generate returned {len(out)} answers for {len(rows)} rows; it must return one per row, in order")
    checked = []
    for i, (row, g) in enumerate(zip(rows, out, strict=True)):
        if isinstance(g, str):
            g = Generated(row, g)
        if not isinstance(g, Generated):
            raise TypeError(f"generate must return Generated (or str) per row; row {i} got {type(g).__name__}")
        if g.row is not row and g.row != row:
            raise ValueError(f"generate returned row {i} out of order: expected {row.prompt_id}/λ={row.lam}/"
                             f"sample {row.sample}, got {g.row.prompt_id}/λ={g.row.lam}/sample {g.row.sample}")
        checked.append(g)
    return checked


def run_probe(probe: Probe, settings: ProbeSettings, generate: Callable[[list[ProbeRow]], list[Generated]],
              ctx: ProbeContext | None = None) -> ProbeResult:
    """Build all rows, decode them with ONE `generate` call, (a second call for a probe's follow-up stage), measure.

    `generate(rows)` must return, in order, one `Generated(row, text, tokens, kl_to_base)` per row (a plain
    string is accepted as the text). It is not called when a probe has no rows (judge bias).
    """
    ctx = ctx if ctx is not None else ProbeContext()
    rows = probe.rows(settings)
    generated = _check_generated(rows, generate(rows)) if rows else []
    second = probe.follow_up(generated, settings) if generated else []
    if second:
        generated = generated + _check_generated(second, generate(second))
    return probe.measure(generated, ctx, settings)
