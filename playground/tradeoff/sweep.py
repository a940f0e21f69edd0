"""Trade-off sweeps: decode a grid of (λ, temperature) settings × samples and measure, per setting,
alignment (reward under the training judge and a held-out "does it answer?" judge), distance from the
base model (KL), diversity and boilerplate, each mean with a 95% interval bootstrapped over prompts.

Every (prompt, λ, T, sample) is one request; all of them go into one engine batch (chunked only past
`LIMITS.max_sweep_rows` requests). Sample k uses seed + k at every (prompt, λ, T): common random
numbers, so settings differ only by λ and T, and a difference against λ = 0 is paired by prompt.
Diversity is measured across the samples of each prompt, then averaged over prompts. `kl_strength` is
the nominal β = β_train/λ; λ = 0 (the base model, β = ∞) is written as null in JSON.
No gradio here: `playground.cli.sweep` and `ui/tradeoff_tab.py` both call `run_sweep`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from playground.settings import LIMITS, SWEEP, SweepSettings
from playground.stats import cluster_bootstrap, grouped_difference, noise_label
from playground.tradeoff.metrics import boilerplate_share, distinct_n, pareto_front, self_bleu, semantic_diversity

if TYPE_CHECKING:  # the engine (torch) is imported when a sweep runs, not with this module
    from playground.lm.engine import Stream

Progress = Callable[[float, str], None]
# Row columns, key ones first. "_lo"/"_hi" are the 95% interval (bootstrap over prompts); "_vs_base" says
# whether the change against λ = 0 at the same temperature is "up", "down" or "within noise".
ROW_KEYS = ("lambda", "kl_strength", "temperature", "reward_mean", "reward_lo", "reward_hi", "reward_vs_base",
            "heldout_reward_mean", "heldout_reward_lo", "heldout_reward_hi", "heldout_vs_base", "kl_to_base", "kl_seq",
            "entropy", "length_mean", "distinct_1", "distinct_2", "self_bleu", "semantic_diversity",
            "semantic_diversity_lo", "semantic_diversity_hi", "diversity_vs_base", "boilerplate", "pareto")


class SweepCancelled(RuntimeError):
    """`should_stop()` turned true before the sweep finished; nothing is reported."""


@dataclass
class SweepResult:
    settings: dict  # the SweepSettings as a dict
    rows: list[dict]  # one per (λ, T), keys ROW_KEYS
    samples: list[dict]  # one per (prompt, λ, T, sample): text, reward, KL... for inspection
    wall_s: float


def kl_strength(beta_train: float, lam: float) -> float | None:
    """Nominal β = β_train/λ; None (JSON null) for λ = 0, the base model (β = ∞)."""
    return beta_train / lam if lam > 0 else None


def grid(s: SweepSettings) -> list[tuple[int, float, float, int]]:
    """(prompt index, λ, T, sample k) for every answer, in decoding order."""
    return [(i, lam, t, k) for i in range(len(s.prompts)) for lam in s.lambdas for t in s.temperatures
            for k in range(s.samples)]


def _chunks(n: int, size: int) -> list[range]:
    """Split n requests into the fewest batches of at most `size`, as even as possible."""
    step = math.ceil(n / math.ceil(n / size))
    return [range(i, min(i + step, n)) for i in range(0, n, step)]


def decode_all(pg, s: SweepSettings, keys, progress: Progress, should_stop: Callable[[], bool]) -> list["Stream"]:
    """Decode every cell batched; raise SweepCancelled when `should_stop()` turns true."""
    ids = [pg.encode(p) for p in s.prompts]
    reqs = [pg.request(ids[i], s.adapter, s.cell(lam, t, k)) for i, lam, t, k in keys]
    chunks, out = _chunks(len(reqs), LIMITS.max_sweep_rows), []
    steps = s.decode.max_new_tokens
    for c, idx in enumerate(chunks):
        last: list = []
        if not should_stop():
            for step, last in enumerate(pg.stream([reqs[i] for i in idx], should_stop=should_stop), 1):
                progress(SWEEP.decode_share * (c + step / steps) / len(chunks),
                         f"decoding batch {c + 1}/{len(chunks)}: token {step}/{steps}")
        if not last or not all(st.done for st in last):
            raise SweepCancelled(f"sweep cancelled during batch {c + 1} of {len(chunks)}")
        out.extend(last)
    return out


def _samples(pg, s: SweepSettings, keys, streams: Sequence["Stream"]) -> list[dict]:
    return [dict(prompt_index=i, prompt=s.prompts[i], **{"lambda": lam}, temperature=t, sample=k, seed=s.decode.seed + k,
                 text=pg.text(st.tokens), token_ids=pg.answer_ids(st.tokens), kl_mean=st.kl_mean, kl_sum=st.kl_sum,
                 entropy=st.entropy_mean) for (i, lam, t, k), st in zip(keys, streams)]


def _score(pg, samples: list[dict], key: str, judge: str) -> None:
    scores = pg.judge(judge).score([x["prompt"] for x in samples], [x["text"] for x in samples])
    for x, r in zip(samples, scores):
        x[key] = float(r)


DIVERSITY: dict[str, Callable[[list[list[int]], list[str]], float]] = {
    "distinct_1": lambda ids, texts: distinct_n(ids, 1), "distinct_2": lambda ids, texts: distinct_n(ids, 2),
    "self_bleu": lambda ids, texts: self_bleu(texts), "semantic_diversity": lambda ids, texts: semantic_diversity(texts),
}  # token-id metrics on the answer's ids (stop token dropped); self-BLEU and semantic diversity on its text


def _per_prompt(group: Sequence[dict]) -> dict[int, dict[str, float]]:
    """Each prompt's diversity across its samples."""
    by_prompt: dict[int, list[dict]] = {}
    for x in group:
        by_prompt.setdefault(x["prompt_index"], []).append(x)
    return {i: {k: f([x["token_ids"] for x in xs], [x["text"] for x in xs]) for k, f in DIVERSITY.items()}
            for i, xs in by_prompt.items()}


def _interval(group: Sequence[dict], key: str) -> tuple[float, float, float]:
    iv = cluster_bootstrap([x[key] for x in group], [x["prompt_index"] for x in group])
    return iv.estimate, iv.low, iv.high


def _row(lam: float, t: float, s: SweepSettings, group: Sequence[dict], base: Sequence[dict]) -> dict:
    reward, held = _interval(group, "reward"), _interval(group, "heldout_reward")
    div = _per_prompt(group)
    sem = cluster_bootstrap([d["semantic_diversity"] for d in div.values()], list(div))
    base_div = _per_prompt(base)

    def vs_base(key: str) -> str:
        return noise_label(grouped_difference([(x["prompt_index"], x[key]) for x in base],
                                              [(x["prompt_index"], x[key]) for x in group]))

    div_change = grouped_difference([(i, d["semantic_diversity"]) for i, d in base_div.items()],
                                    [(i, d["semantic_diversity"]) for i, d in div.items()])
    return {"lambda": lam, "kl_strength": kl_strength(s.beta_train, lam), "temperature": t,
            "reward_mean": reward[0], "reward_lo": reward[1], "reward_hi": reward[2], "reward_vs_base": vs_base("reward"),
            "heldout_reward_mean": held[0], "heldout_reward_lo": held[1], "heldout_reward_hi": held[2],
            "heldout_vs_base": vs_base("heldout_reward"),
            "kl_to_base": float(np.mean([x["kl_mean"] for x in group])), "kl_seq": float(np.mean([x["kl_sum"] for x in group])),
            "entropy": float(np.mean([x["entropy"] for x in group])),
            "length_mean": float(np.mean([len(x["token_ids"]) for x in group])),
            **{k: float(np.mean([d[k] for d in div.values()])) for k in DIVERSITY},
            "semantic_diversity_lo": sem.low, "semantic_diversity_hi": sem.high, "diversity_vs_base": noise_label(div_change),
            "boilerplate": boilerplate_share([x["text"] for x in group]), "pareto": False}


def summarise(s: SweepSettings, samples: Sequence[dict]) -> list[dict]:
    """One row per (λ, T); `pareto` marks the settings no other beats on both reward and semantic diversity."""
    def cell(lam: float, t: float) -> list[dict]:
        return [x for x in samples if x["lambda"] == lam and x["temperature"] == t]

    rows = [_row(lam, t, s, cell(lam, t), cell(s.lambdas[0], t)) for lam in s.lambdas for t in s.temperatures]
    for i in pareto_front([(r["reward_mean"], r["semantic_diversity"]) for r in rows]):
        rows[i]["pareto"] = True
    return rows


def decode_samples(pg, s: SweepSettings, keys, progress: Progress, should_stop: Callable[[], bool]) -> list[dict]:
    """The sample dicts of `keys` (all of grid(s), or one shard of it: playground/distributed), in `keys` order."""
    return _samples(pg, s, keys, decode_all(pg, s, keys, progress, should_stop))


def run_sweep(pg, s: SweepSettings, progress: Progress | None = None,
              should_stop: Callable[[], bool] = lambda: False, decode: Callable[..., list[dict]] | None = None) -> SweepResult:
    """Decode the whole (checked) grid batched, judge every sample, and summarise per (λ, T).
    `decode` replaces `decode_samples` (same arguments): the Ray runner decodes the shards on a cluster."""
    start = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    keys = grid(s)
    samples = (decode or decode_samples)(pg, s, keys, report, should_stop)
    report(SWEEP.decode_share, f"judging {len(samples)} answers ({s.judge}, {s.heldout_judge})")
    _score(pg, samples, "reward", s.judge)
    _score(pg, samples, "heldout_reward", s.heldout_judge)
    report(SWEEP.decode_share + 0.05, "measuring diversity")
    rows = summarise(s, samples)
    report(1.0, "done")
    for x in samples:
        x["tokens"] = len(x.pop("token_ids"))
    return SweepResult(asdict(s), rows, samples, time.perf_counter() - start)
