"""Trade-off sweeps: decode a grid of (λ, temperature) settings × samples and measure, per setting,
alignment (reward under the training judge and a held-out judge), distance from the base model (KL)
and diversity. No gradio here: `playground.cli.sweep` and `ui/tradeoff_tab.py` both call `run_sweep`.

Every (prompt, λ, T, sample) is one `Request`; all of them go into one engine batch (chunked only past
`LIMITS.max_sweep_rows` requests). Sample k uses seed + k at every (prompt, λ, T): common random
numbers, so settings differ only by λ and T. Diversity is measured across the samples of each prompt,
then averaged over prompts. `kl_strength` is β = β_train/λ; λ = 0 (the base model, β = ∞) is written
as null in JSON and an empty cell in CSV.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from playground.lm.prompts import decode, prompt_ids
from playground.tradeoff.metrics import distinct_n, ead, mean_ci95, pareto_front, self_bleu, semantic_diversity
from playground.settings import LIMITS
from playground.validation import InputError, check_choice, check_decode, check_int, check_number, check_prompt, lambda_from

if TYPE_CHECKING:  # the engine (torch) is imported when a sweep runs, not with this module
    from playground.lm.engine import Request, Stream

Progress = Callable[[float, str], None]
DEFAULT_LAMBDAS = (0.0, 0.5, 1.0, 2.0, 4.0)
DEFAULT_TEMPERATURES = (0.7, 1.0)
DEFAULT_PROMPTS = (
    "Give me a tip for a rainy day.", "What do you think about learning to cook?",
    "How should I spend a free Sunday?", "Tell me about keeping a small garden.",
    "My train is late again. Any advice?", "Describe your ideal breakfast.",
    "How can I get better at remembering names?", "What should I know before adopting a cat?",
)
BASE_WORDS = ("inf", "base")  # in a kl_strengths list: β = ∞, i.e. λ = 0 (the base model)
DECODE_SHARE = 0.9  # share of the progress bar spent decoding; the rest is judging and metrics
ROW_KEYS = ("lambda", "kl_strength", "temperature", "reward_mean", "reward_ci95", "heldout_reward_mean",
            "heldout_reward_ci95", "kl_to_base", "kl_seq", "entropy", "length_mean", "distinct_1", "distinct_2",
            "ead", "self_bleu", "semantic_diversity", "pareto")


class SweepCancelled(RuntimeError):
    """`should_stop()` turned true before the sweep finished; partial settings are not reported."""


@dataclass
class SweepSettings:
    """One sweep. `resolve` validates it (InputError names the field) and fills the defaults."""

    # The LoRA adapter to realign; its card's β_train sets λ = β_train / β.
    adapter: str
    # Prompts to answer. More prompts = steadier averages; time grows linearly with their number.
    prompts: list[str]
    # λ values. Higher λ = further from the base model: more aligned, usually less diverse, larger KL;
    # 0 = base model, 1 = tuned as trained, > 1 extrapolates. Give lambdas or kl_strengths, not both.
    lambdas: list[float] | None = None
    # KL strengths β instead of λ. Higher β = closer to the base model; inf = the base model itself.
    kl_strengths: list[float] | None = None
    # Sampling temperatures. Higher = more random and diverse, usually lower reward; 0 = greedy (all
    # samples of a prompt then coincide, diversity 0).
    temperatures: list[float] = field(default_factory=lambda: list(DEFAULT_TEMPERATURES))
    # Samples per prompt per (λ, T). More = steadier reward and diversity estimates, slower.
    samples: int = 4
    # Answer length cap in tokens. Longer = more text per sample, slower.
    max_new_tokens: int = 64
    # Nucleus sampling. Lower = safer, less diverse; 1.0 = no truncation (temperature alone sets randomness).
    top_p: float = 1.0
    # Base seed: sample k uses seed + k. The same settings and seed reproduce the same sweep.
    seed: int = 0
    # Judge whose reward is reported (default: the adapter's own judge, the proxy it was trained on).
    judge: str | None = None
    # Held-out judge (default: the other built-in judge); proxy ↑ while held-out ↓ = over-optimisation.
    heldout_judge: str | None = None


@dataclass
class SweepResult:
    settings: dict  # the resolved SweepSettings plus beta_train
    rows: list[dict]  # one per (λ, T), keys ROW_KEYS
    samples: list[dict]  # one per (prompt, λ, T, sample): text, reward, KL... for inspection
    wall_s: float


def parse_floats(name: str, text: str | Sequence[float]) -> list[float]:
    """'0, 0.5,1' → [0.0, 0.5, 1.0]; an InputError naming `name` for anything that is not a number."""
    items = text.replace(";", ",").split(",") if isinstance(text, str) else list(text)
    out: list[float] = []
    for item in items:
        item = item.strip() if isinstance(item, str) else item
        if item == "":
            continue
        if isinstance(item, str) and item.lower() in BASE_WORDS:
            item = "inf"
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            raise InputError(f"{name}: {item!r} is not a number; give comma-separated numbers, e.g. 0,0.5,1") from None
    if not out:
        raise InputError(f"{name}: give at least one value")
    return out


def _judge(name: str, value: str) -> str:
    from playground.judges.judges import HF_PREFIX, available_judges

    if isinstance(value, str) and value.startswith(HF_PREFIX) and value[len(HF_PREFIX):].strip():
        return value
    return check_choice(name, value, available_judges())


def _prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str) or not prompts:
        raise InputError("prompts: give at least one prompt (a list, one prompt per item)")
    if len(prompts) > LIMITS.max_sweep_prompts:
        raise InputError(f"prompts: {len(prompts)} given; the limit is {LIMITS.max_sweep_prompts}")
    for i, p in enumerate(prompts, 1):
        try:
            check_prompt(p)
        except InputError as err:
            raise InputError(f"prompts (#{i}): {err}") from None
    return list(prompts)


def _values(name: str, values, low: float, high: float) -> list[float]:
    """Parsed, range-checked, de-duplicated and sorted; inf passes for kl_strengths (the base model)."""
    parsed = parse_floats(name, values)
    return sorted({v if v == math.inf and name == "kl_strengths" else check_number(name, v, low, high) for v in parsed})


def precheck(s: SweepSettings) -> SweepSettings:
    """Validate the fields that need no model (the CLI runs this before loading one); returns them normalised."""
    if s.lambdas is not None and s.kl_strengths is not None:
        raise InputError("give lambdas or kl_strengths, not both")
    lim = LIMITS
    betas = None if s.kl_strengths is None else _values("kl_strengths", s.kl_strengths, lim.min_kl_strength,
                                                         lim.max_kl_strength)
    lams = None if betas else _values("lambdas", DEFAULT_LAMBDAS if s.lambdas is None else s.lambdas, lim.min_lambda,
                                      lim.max_lambda)
    temps = _values("temperatures", s.temperatures, 0.0, lim.max_temperature)
    samples = check_int("samples", s.samples, 1, lim.max_samples_per_setting)
    n = len(betas or lams or ())
    if n * len(temps) * samples > lim.max_sweep_rows:
        raise InputError(f"lambdas × temperatures × samples = {n} × {len(temps)} × {samples} = {n * len(temps) * samples} "
                         f"settings per prompt; the limit is {lim.max_sweep_rows}")
    _, top_p, max_new, seed = check_decode(0.0, s.top_p, s.max_new_tokens, s.seed)
    check_int("seed", seed, 0, lim.max_seed - samples)
    judges = {k: _judge(k, getattr(s, k)) if getattr(s, k) else None for k in ("judge", "heldout_judge")}
    return replace(s, prompts=_prompts(s.prompts), lambdas=lams, kl_strengths=betas, temperatures=temps, samples=samples,
                   max_new_tokens=max_new, top_p=top_p, seed=seed, **judges)


def resolve(pg, s: SweepSettings) -> SweepSettings:
    """Validate every field and fill the defaults: λ list (sorted) instead of β, both judges named."""
    from playground.judges.judges import available_judges

    s = precheck(s)
    adapter = check_choice("adapter", s.adapter, sorted(pg.adapters))
    info = pg.adapters[adapter]
    lams = s.lambdas or sorted({0.0 if b == math.inf else lambda_from(b, None, info.beta_train)[0] for b in s.kl_strengths})
    judge = s.judge or _judge("judge", info.judge)
    others = [j for j in available_judges() if j != judge]
    heldout = s.heldout_judge or (others[0] if others else judge)
    return replace(s, adapter=adapter, lambdas=lams, kl_strengths=None, judge=judge, heldout_judge=heldout)


def kl_strength(beta_train: float, lam: float) -> float | None:
    """β = β_train/λ; None (JSON null) for λ = 0, the base model (β = ∞)."""
    return beta_train / lam if lam > 0 else None


def build_requests(pg, s: SweepSettings) -> tuple[list[tuple[int, float, float, int]], list[Request]]:
    """One Request per (prompt, λ, T, sample), keyed (prompt index, λ, T, sample k); seed = s.seed + k."""
    from playground.lm.engine import Request

    ids = [prompt_ids(pg.tokenizer, (), p, pg.chat) for p in s.prompts]
    keys = [(i, lam, t, k) for i in range(len(ids)) for lam in s.lambdas for t in s.temperatures
            for k in range(s.samples)]
    reqs = [Request(ids[i], adapter=s.adapter, lam=lam, mode="logits", temperature=t, top_p=s.top_p,
                    max_new_tokens=s.max_new_tokens, seed=s.seed + k) for i, lam, t, k in keys]
    return keys, reqs


def _chunks(n: int, size: int) -> list[range]:
    """Split n requests into the fewest batches of at most `size`, as even as possible."""
    step = math.ceil(n / math.ceil(n / size))
    return [range(i, min(i + step, n)) for i in range(0, n, step)]


def decode_all(pg, reqs: Sequence[Request], progress: Progress, should_stop: Callable[[], bool]) -> list[Stream]:
    """Decode all requests batched; raise SweepCancelled when `should_stop()` turns true."""
    chunks, out = _chunks(len(reqs), LIMITS.max_sweep_rows), []
    steps = max(r.max_new_tokens for r in reqs)
    for c, idx in enumerate(chunks):
        last: list[Stream] = []
        if not should_stop():
            for step, last in enumerate(pg.engine.stream([reqs[i] for i in idx], should_stop=should_stop), 1):
                progress(DECODE_SHARE * (c + step / steps) / len(chunks),
                         f"decoding batch {c + 1}/{len(chunks)}: token {step}/{steps}")
        if not last or not all(st.done for st in last):
            raise SweepCancelled(f"sweep cancelled during batch {c + 1} of {len(chunks)}")
        out.extend(last)
    return out


def _sample_dicts(pg, s: SweepSettings, keys, streams: Sequence[Stream]) -> list[dict]:
    stop = set(pg.stop_ids)
    return [dict(prompt_index=i, prompt=s.prompts[i], **{"lambda": lam}, temperature=t, sample=k, seed=s.seed + k,
                 text=decode(pg.tokenizer, st.tokens, pg.stop_ids), token_ids=[x for x in st.tokens if x not in stop],
                 kl_mean=st.kl_mean, kl_sum=st.kl_sum, entropy=st.entropy_mean)
            for (i, lam, t, k), st in zip(keys, streams)]


def _score(pg, samples: list[dict], key: str, judge: str) -> None:
    scores = pg.judge(judge).score([x["prompt"] for x in samples], [x["text"] for x in samples])
    for x, r in zip(samples, scores):
        x[key] = float(r)


DIVERSITY: dict[str, Callable[[list[list[int]], list[str], int], float]] = {
    "distinct_1": lambda ids, texts, vocab: distinct_n(ids, 1), "distinct_2": lambda ids, texts, vocab: distinct_n(ids, 2),
    "ead": lambda ids, texts, vocab: ead(ids, 2, vocab), "self_bleu": lambda ids, texts, vocab: self_bleu(texts),
    "semantic_diversity": lambda ids, texts, vocab: semantic_diversity(texts),
}  # token-id metrics on the answer's ids (stop token dropped); self-BLEU and semantic diversity on its text


def _diversity(group: Sequence[dict], vocab: int) -> dict[str, float]:
    """Diversity across the samples of each prompt, averaged over prompts."""
    by_prompt: dict[int, list[dict]] = {}
    for x in group:
        by_prompt.setdefault(x["prompt_index"], []).append(x)
    per = [[x["token_ids"] for x in xs] for xs in by_prompt.values()], [[x["text"] for x in xs] for xs in by_prompt.values()]
    return {k: float(np.mean([f(ids, texts, vocab) for ids, texts in zip(*per)])) for k, f in DIVERSITY.items()}


def _mean(group: Sequence[dict], key: str) -> float:
    return float(np.mean([x[key] for x in group]))


def _row(lam: float, t: float, beta_train: float, group: Sequence[dict], vocab: int) -> dict:
    reward, reward_ci = mean_ci95([x["reward"] for x in group])
    held, held_ci = mean_ci95([x["heldout_reward"] for x in group])
    return {"lambda": lam, "kl_strength": kl_strength(beta_train, lam), "temperature": t, "reward_mean": reward,
            "reward_ci95": reward_ci, "heldout_reward_mean": held, "heldout_reward_ci95": held_ci,
            "kl_to_base": _mean(group, "kl_mean"), "kl_seq": _mean(group, "kl_sum"), "entropy": _mean(group, "entropy"),
            "length_mean": float(np.mean([len(x["token_ids"]) for x in group])), **_diversity(group, vocab),
            "pareto": False}


def summarise(s: SweepSettings, beta_train: float, samples: Sequence[dict], vocab: int) -> list[dict]:
    """One row per (λ, T); `pareto` marks the settings no other beats on both reward and semantic diversity."""
    rows = [_row(lam, t, beta_train, [x for x in samples if x["lambda"] == lam and x["temperature"] == t], vocab)
            for lam in s.lambdas for t in s.temperatures]
    for i in pareto_front([(r["reward_mean"], r["semantic_diversity"]) for r in rows]):
        rows[i]["pareto"] = True
    return rows


def run_sweep(pg, settings: SweepSettings, progress: Progress | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> SweepResult:
    """Validate, decode the whole grid batched, judge every sample, and summarise per (λ, T)."""
    start = time.perf_counter()
    s = resolve(pg, settings)
    report = progress or (lambda fraction, message: None)
    keys, reqs = build_requests(pg, s)
    samples = _sample_dicts(pg, s, keys, decode_all(pg, reqs, report, should_stop))
    report(DECODE_SHARE, f"judging {len(samples)} answers ({s.judge}, {s.heldout_judge})")
    _score(pg, samples, "reward", s.judge)
    _score(pg, samples, "heldout_reward", s.heldout_judge)
    report(DECODE_SHARE + 0.05, "measuring diversity")
    beta_train = pg.adapters[s.adapter].beta_train
    rows = summarise(s, beta_train, samples, len(pg.tokenizer))
    report(1.0, "done")
    for x in samples:
        x["tokens"] = len(x.pop("token_ids"))
    return SweepResult(asdict(s) | {"beta_train": beta_train}, rows, samples, time.perf_counter() - start)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _json_safe(value.item())
    return value


def to_json(rows: Sequence[dict]) -> str:
    """The rows as a JSON list; non-finite numbers (and λ = 0's kl_strength) become null."""
    return json.dumps([{k: _json_safe(v) for k, v in r.items()} for r in rows], indent=2, ensure_ascii=False) + "\n"


def to_csv(rows: Sequence[dict]) -> str:
    """The rows as CSV with a header; null values are empty cells."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else list(ROW_KEYS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if _json_safe(v) is None else _json_safe(v) for k, v in r.items()})
    return buf.getvalue()
