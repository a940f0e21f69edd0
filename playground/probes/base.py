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

Statistics (`playground.intervals`): samples of one prompt are correlated, so every mean and share is
bootstrapped by prompt (`ProbeRow.prompt_id` is the cluster key). A share whose bootstrap interval has
zero width (every row 0, or every row 1) shows the Wilson interval over the number of prompts instead:
"0 of 12 prompts" is not "exactly 0". Each λ is compared with the reference λ (0 when the grid has it,
else the smallest λ) by a paired-by-prompt difference; "within noise" means its 95% interval covers 0.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from playground.intervals import DEFAULT_BOOTSTRAP, Interval, cluster_bootstrap, grouped_difference, noise_label, wilson
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


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name, one-line meaning and which direction is worse ("higher", "lower" or None)."""

    name: str
    description: str
    worse: str | None = None


@dataclass
class MetricRow:
    """One metric at one λ (None when the metric is not per λ) for one group (a language, judge, variant…).

    `value` is the estimate with its 95% interval; `vs_reference` the paired-by-prompt difference from the
    reference λ (None at the reference itself and for metrics without λ); `noise` is its label.
    """

    metric: str
    lam: float | None
    value: Interval
    group: str = ""
    vs_reference: Interval | None = None
    noise: str = ""
    n_rows: int = 0


@dataclass
class Example:
    """A prompt/answer pair shown next to the numbers; `note` says what the metric saw in it."""

    lam: float
    prompt_id: str
    prompt: str
    answer: str
    note: str = ""


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def interval_json(iv: Interval | None) -> dict[str, Any] | None:
    if iv is None:
        return None
    return {"estimate": _finite(iv.estimate), "low": _finite(iv.low), "high": _finite(iv.high), "n_prompts": iv.n_clusters}


@dataclass
class ProbeResult:
    """A probe's answer: metric rows per λ (and group) with 95% intervals, examples and plain-words findings."""

    probe: str
    title: str
    description: str
    metrics: list[MetricSpec]
    rows: list[MetricRow]
    examples: list[Example] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    settings: ProbeSettings | None = None
    reference_lambda: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, metric: str, lam: float | None = None, group: str = "") -> MetricRow:
        """The row of `metric` at `lam` for `group` (KeyError listing what exists otherwise)."""
        for r in self.rows:
            if r.metric == metric and r.group == group and (r.lam == lam or (lam is not None and r.lam is not None
                                                                               and math.isclose(r.lam, lam))):
                return r
        have = sorted({(r.metric, r.group) for r in self.rows})
        raise KeyError(f"no row {metric!r} at λ={lam} group={group!r}; have {have}")

    def table(self) -> list[dict[str, Any]]:
        """Flat rows for a table: metric, group, λ, "estimate [low, high]", Δ vs reference and its label."""
        out = []
        for r in self.rows:
            out.append({"metric": r.metric, "group": r.group, "lambda": r.lam, "value": r.value.label(),
                        "vs_reference": r.vs_reference.label() if r.vs_reference else "",
                        "noise": r.noise, "prompts": r.value.n_clusters, "rows": r.n_rows})
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN → null)."""
        return {
            "probe": self.probe, "title": self.title, "description": self.description,
            "settings": self.settings.to_json() if self.settings else None,
            "reference_lambda": self.reference_lambda,
            "metrics": [{"name": m.name, "description": m.description, "worse": m.worse} for m in self.metrics],
            "rows": [{"metric": r.metric, "group": r.group, "lambda": r.lam, "value": interval_json(r.value),
                      "vs_reference": interval_json(r.vs_reference), "noise": r.noise, "rows": r.n_rows}
                     for r in self.rows],
            "examples": [{"lambda": e.lam, "prompt_id": e.prompt_id, "prompt": e.prompt, "answer": e.answer,
                          "note": e.note} for e in self.examples],
            "findings": list(self.findings),
            "extra": _json_safe(self.extra),
        }


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, Interval):
        return interval_json(x)
    if isinstance(x, (float, np.floating)):
        return _finite(float(x))
    if isinstance(x, np.integer):
        return int(x)
    return x


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


# ----------------------------------------------------------------------------------------------- statistics

def share_interval(values: Sequence[float], clusters: Sequence[Hashable], n_boot: int = DEFAULT_BOOTSTRAP,
                   seed: int = 0) -> Interval:
    """A share (rows valued 0/1, or 0.5 for a tie) bootstrapped by prompt; Wilson over prompts when degenerate.

    A bootstrap of all-0 or all-1 rows has zero width; the Wilson interval of (round(p·P) of P prompts) says
    how little P prompts can rule out.
    """
    iv = cluster_bootstrap(values, clusters, n_boot=n_boot, seed=seed)
    if iv.n_clusters and math.isfinite(iv.estimate) and (not math.isfinite(iv.low) or iv.low == iv.high):
        p = iv.n_clusters
        k = int(round(iv.estimate * p))
        w = wilson(k, p)
        return Interval(iv.estimate, 0.0 if k == 0 else w.low, 1.0 if k == p else w.high, p)
    return iv


def mean_interval(values: Sequence[float], clusters: Sequence[Hashable], n_boot: int = DEFAULT_BOOTSTRAP,
                  seed: int = 0) -> Interval:
    """A mean bootstrapped by prompt."""
    return cluster_bootstrap(values, clusters, n_boot=n_boot, seed=seed)


def per_lambda(metric: str, records: Sequence[tuple[float, Hashable, float]], settings: ProbeSettings,
               ctx: ProbeContext, *, binary: bool, group: str = "") -> list[MetricRow]:
    """One MetricRow per λ of the grid from (λ, prompt_id, value) records; NaN values are left out.

    Each λ ≠ reference also gets the paired-by-prompt difference from the reference λ and its noise label.
    """
    by_lam: dict[float, list[tuple[Hashable, float]]] = {lam: [] for lam in settings.lambdas}
    for lam, pid, v in records:
        if v is None or not math.isfinite(float(v)):
            continue
        by_lam.setdefault(float(lam), []).append((pid, float(v)))
    ref = settings.reference_lambda
    out = []
    for lam in settings.lambdas:
        pairs = by_lam.get(lam, [])
        vals = [v for _, v in pairs]
        pids = [p for p, _ in pairs]
        est = (share_interval if binary else mean_interval)(vals, pids, n_boot=ctx.n_boot, seed=ctx.seed)
        diff = None
        label = "reference"
        if lam != ref:
            diff = grouped_difference(by_lam.get(ref, []), pairs, n_boot=ctx.n_boot, seed=ctx.seed)
            label = noise_label(diff)
        out.append(MetricRow(metric, lam, est, group, diff, label, len(pairs)))
    return out


def pick_examples(candidates: Sequence[Example], lambdas: Sequence[float], k: int) -> list[Example]:
    """Up to k examples per λ, in the order given (a probe lists the telling ones first)."""
    out = []
    for lam in lambdas:
        out.extend([e for e in candidates if e.lam == lam][:k])
    return out


def _fmt_lam(lam: float) -> str:
    return f"{lam:g}"


def trend(rows: Sequence[MetricRow], metric: str, group: str = "", digits: int = 2) -> str | None:
    """"metric: 0.80 at λ=0 → 0.42 at λ=2 (Δ −0.38 [−0.50, −0.21], down)": the reference vs the largest λ."""
    mine = [r for r in rows if r.metric == metric and r.group == group and r.lam is not None]
    ref = [r for r in mine if r.vs_reference is None]
    others = [r for r in mine if r.vs_reference is not None]
    if not ref or not others:
        return None
    hi = max(others, key=lambda r: r.lam)
    if not (math.isfinite(ref[0].value.estimate) and math.isfinite(hi.value.estimate)):
        return None
    where = f" [{group}]" if group else ""
    return (f"{metric}{where}: {ref[0].value.estimate:.{digits}f} at λ={_fmt_lam(ref[0].lam)} → "
            f"{hi.value.estimate:.{digits}f} at λ={_fmt_lam(hi.lam)} (Δ {hi.vs_reference.label(digits)}, {hi.noise})")


def max_lambda_row(rows: Sequence[MetricRow], metric: str, group: str = "") -> MetricRow | None:
    """The row of `metric` at the largest non-reference λ (None when there is none)."""
    mine = [r for r in rows if r.metric == metric and r.group == group and r.vs_reference is not None]
    return max(mine, key=lambda r: r.lam) if mine else None
