"""Trade-off sweeps: decode a grid of (λ, temperature) settings × samples and measure, per setting,
alignment (reward under the training judge and a held-out "does it answer?" judge), distance from the
base model (KL), diversity and boilerplate, each mean with a 95% interval bootstrapped over prompts.

Every (prompt, λ, T, sample) is one request; all of them go into one engine batch (chunked only past
`LIMITS.max_sweep_rows` requests). Sample k uses seed + k at every (prompt, λ, T): common random
numbers, so settings differ only by λ and T, and a difference against λ = 0 is paired by prompt.
Diversity is measured across the samples of each prompt, then averaged over prompts. `kl_strength` is
the nominal β = β_train/λ; λ = 0 (the base model, β = ∞) is written as null in JSON.
No gradio here: `playground.cli.sweep` and `ui/tradeoff_tab.py` both call `run_sweep`.

Every control on one frontier (`SweepSettings.control`; each row says which, with every knob under a fixed key
— `lambda`, `mode`, `n`, `gamma` — so rows of different sweeps concatenate into one table):

* "dera" / "weights": λ × T, as above (logit mixing; LoRA delta × λ). n = 1, γ = 1.
* "bon" (best-of-n): for each kept answer, n candidates of the policy at lambdas[0] (0 = the base model) are
  decoded and the one the proxy judge scores highest is kept (first on ties). Candidate j of kept answer k has
  seed + k + samples·j, so the candidates of n are the first n of the largest n's (common random numbers; one
  decode serves every n). `kl_bound` = log n − (n−1)/n is the analytic bound on KL(π_bon ‖ π) (Stiennon et al.
  2020; Gao et al. 2022), reached when rewards never tie. `kl_seq` is an empirical estimate of KL(π_bon ‖
  π_base): for a reward-only selection with random tie breaks the likelihood ratio of the kept answer y is
  exactly π_bon(y)/π(y) = (F(r)^n − F(r⁻)^n) / (F(r) − F(r⁻)), F the CDF of the judge's reward r(y) under π,
  F(r⁻) = P(R < r). We plug in the empirical F of y's reward among the prompt's candidates *outside* y's own n
  — the (samples − 1) × max n candidates of the other kept answers, independent draws of the same policy (y's own
  n are ≤ r by construction and would bias it up) — and average log of the ratio over the kept answers (the plug-in
  over the candidates' judge ranks; consistent as samples grow; with distinct rewards its mean approaches the
  bound, ties — identical or equally scored answers — pull it below; null with one sample for n > 1). The sampled
  policy's own distance from the base is added: the kept answer's Σ_t KL(π_λ ‖ π_base) along its tokens
  (0 for the base model; for λ > 0 a per-path approximation of that term). Compute: `decode_tokens` is the
  tokens decoded per kept answer (n × an answer), `cost_tokens` the same in forward token-rows.
* "cfg" (prompt guidance): ℓ = ℓ_λ^uncond + γ(ℓ_λ − ℓ_λ^uncond) for each γ × T on the policy at lambdas[0]; the
  unconditional branch reads the chat template without the user's text (or `negative_prompt`). Its KL is the
  per-token readout against the base model on the real prompt, as for λ; a guided answer costs 2× rows.

`_vs_base` compares with the control's reference: λ = lambdas[0] (dera, weights), n = ns[0] (bon), γ = 1 if
swept else gammas[0] (cfg), at the same temperature, paired by prompt.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from playground.settings.request import LIMITS, SWEEP, SweepSettings
from playground.intervals import cluster_bootstrap, grouped_difference, noise_label
from playground.tradeoff.metrics import boilerplate_share, distinct_n, pareto_front, self_bleu, semantic_diversity

if TYPE_CHECKING:  # the engine (torch) is imported when a sweep runs, not with this module
    from playground.lm.request import Stream

Progress = Callable[[float, str], None]
# Row columns, key ones first. "_lo"/"_hi" are the 95% interval (bootstrap over prompts); "_vs_base" says
# whether the change against the control's reference (λ = 0 for dera) at the same temperature is "up", "down"
# or "within noise". kl_bound: best-of-n's analytic bound (null for the other controls).
ROW_KEYS = ("lambda", "kl_strength", "temperature", "reward_mean", "reward_lo", "reward_hi", "reward_vs_base",
            "heldout_reward_mean", "heldout_reward_lo", "heldout_reward_hi", "heldout_vs_base", "kl_to_base", "kl_seq",
            "entropy", "length_mean", "distinct_1", "distinct_2", "self_bleu", "semantic_diversity",
            "semantic_diversity_lo", "semantic_diversity_hi", "diversity_vs_base", "boilerplate", "pareto",
            "control", "mode", "n", "gamma", "kl_bound", "kl_seq_lo", "kl_seq_hi", "decode_tokens", "cost_tokens")


def bon_kl_bound(n: int) -> float:
    """log n − (n−1)/n: the analytic KL(π_bon ‖ π) of best-of-n when rewards never tie (0 for n = 1)."""
    return math.log(n) - (n - 1) / n


def bon_log_ratio(r: float, others: Sequence[float], n: int) -> float:
    """log π_bon(y)/π(y) for a kept answer of reward r: log[(F^n − F⁻^n)/(F − F⁻)], F = P(R ≤ r), F⁻ = P(R < r)
    under the empirical distribution of `others` ∪ {r}. `others` must be independent of the selection (the prompt's
    candidates outside y's own n: those are ≤ r by construction and would bias the estimate up)."""
    arr = np.append(np.asarray(others, dtype=np.float64), r)
    f, fm = float(np.mean(arr <= r)), float(np.mean(arr < r))
    return math.log((f ** n - fm ** n) / (f - fm))


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


def grid(s: SweepSettings) -> list[tuple]:
    """(prompt index, λ, T, sample k) for every answer, in decoding order; seed = seed + k.

    bon: k runs over samples × max n (candidate j of kept answer k0 is k = k0 + samples·j); cfg: (i, λ, T, k, γ)."""
    if s.control == "bon":
        return [(i, lam, t, k) for i in range(len(s.prompts)) for lam in s.lambdas for t in s.temperatures
                for k in range(s.samples * max(s.ns))]
    if s.control == "cfg":
        return [(i, lam, t, k, g) for i in range(len(s.prompts)) for lam in s.lambdas for g in s.gammas
                for t in s.temperatures for k in range(s.samples)]
    return [(i, lam, t, k) for i in range(len(s.prompts)) for lam in s.lambdas for t in s.temperatures
            for k in range(s.samples)]


def _gamma(key: tuple) -> float:
    return float(key[4]) if len(key) > 4 else 1.0


def _rows_per_token(s: SweepSettings, lam: float, gamma: float) -> int:
    """Forward rows one answer token costs: 1 (base model) or 2 (base + policy row), twice under prompt guidance."""
    return (1 if s.decode.mode == "logits" and lam == 0 else 2) * (2 if gamma != 1.0 else 1)


def _chunks(n: int, size: int) -> list[range]:
    """Split n requests into the fewest batches of at most `size`, as even as possible."""
    step = math.ceil(n / math.ceil(n / size))
    return [range(i, min(i + step, n)) for i in range(0, n, step)]


def decode_all(pg, s: SweepSettings, keys, progress: Progress, should_stop: Callable[[], bool]) -> list["Stream"]:
    """Decode every cell batched; raise SweepCancelled when `should_stop()` turns true."""
    ids = [pg.encode(p) for p in s.prompts]
    uncond = pg.uncond_ids(s.negative_prompt) if any(_gamma(key) != 1.0 for key in keys) else None

    def request(key: tuple):
        i, lam, t, k = key[:4]
        g = _gamma(key)
        return pg.request(ids[i], s.adapter, s.cell(lam, t, k), **({"cfg_scale": g, "uncond_ids": uncond} if g != 1.0 else {}))

    reqs = [request(key) for key in keys]
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
    out = []
    for key, st in zip(keys, streams):
        i, lam, t, k = key[:4]
        g = _gamma(key)
        out.append(dict(prompt_index=i, prompt=s.prompts[i], **{"lambda": lam}, temperature=t, gamma=g, sample=k,
                        seed=s.decode.seed + k, text=pg.text(st.tokens), token_ids=pg.answer_ids(st.tokens),
                        kl_mean=st.kl_mean, kl_sum=st.kl_sum, entropy=st.entropy_mean, decoded=len(st.tokens),
                        cost=len(st.tokens) * _rows_per_token(s, lam, g)))
    return out


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


def _row(lam: float, t: float, s: SweepSettings, group: Sequence[dict], base: Sequence[dict], n: int = 1,
         gamma: float = 1.0) -> dict:
    """One setting's row (ROW_KEYS order) from its answers `group`; `base`: the reference setting's answers."""
    reward, held = _interval(group, "reward"), _interval(group, "heldout_reward")
    kl = cluster_bootstrap([x.get("kl_est", x["kl_sum"]) for x in group], [x["prompt_index"] for x in group])
    div = _per_prompt(group)
    sem = cluster_bootstrap([d["semantic_diversity"] for d in div.values()], list(div))
    base_div = _per_prompt(base)

    def vs_base(key: str) -> str:
        return noise_label(grouped_difference([(x["prompt_index"], x[key]) for x in base],
                                              [(x["prompt_index"], x[key]) for x in group]))

    div_change = grouped_difference([(i, d["semantic_diversity"]) for i, d in base_div.items()],
                                    [(i, d["semantic_diversity"]) for i, d in div.items()])
    per_token = [x.get("kl_est", x["kl_sum"]) / max(len(x["token_ids"]), 1) if "kl_est" in x else x["kl_mean"] for x in group]
    return {"lambda": lam, "kl_strength": kl_strength(s.beta_train, lam), "temperature": t,
            "reward_mean": reward[0], "reward_lo": reward[1], "reward_hi": reward[2], "reward_vs_base": vs_base("reward"),
            "heldout_reward_mean": held[0], "heldout_reward_lo": held[1], "heldout_reward_hi": held[2],
            "heldout_vs_base": vs_base("heldout_reward"),
            "kl_to_base": float(np.mean(per_token)), "kl_seq": kl.estimate,
            "entropy": float(np.mean([x["entropy"] for x in group])),
            "length_mean": float(np.mean([len(x["token_ids"]) for x in group])),
            **{k: float(np.mean([d[k] for d in div.values()])) for k in DIVERSITY},
            "semantic_diversity_lo": sem.low, "semantic_diversity_hi": sem.high, "diversity_vs_base": noise_label(div_change),
            "boilerplate": boilerplate_share([x["text"] for x in group]), "pareto": False,
            "control": s.control, "mode": s.decode.mode, "n": n, "gamma": gamma,
            "kl_bound": bon_kl_bound(n) if s.control == "bon" else None, "kl_seq_lo": kl.low, "kl_seq_hi": kl.high,
            "decode_tokens": float(np.mean([x.get("decoded_total", x["decoded"]) for x in group])),
            "cost_tokens": float(np.mean([x.get("cost_total", x["cost"]) for x in group]))}


def best_of_n(s: SweepSettings, samples: Sequence[dict], n: int) -> list[dict]:
    """The kept answers of best-of-n: per (prompt, λ, T, kept answer k), the highest proxy reward among its n
    candidates (first on ties), with its KL estimate (`kl_est`, see the module doc) and the cost of all n."""
    pools: dict[tuple, dict[int, dict]] = {}
    for x in samples:
        pools.setdefault((x["prompt_index"], x["lambda"], x["temperature"]), {})[x["sample"]] = x
    kept = []
    for pool in pools.values():
        for k in range(s.samples):
            cands = [pool[k + s.samples * j] for j in range(n)]
            best = max(cands, key=lambda x: x["reward"])  # max keeps the first of equal rewards
            # F from the other kept answers' candidates (all max n of them: independent draws of the same policy)
            others = [x["reward"] for key, x in pool.items() if key % s.samples != k]
            selection = bon_log_ratio(best["reward"], others, n) if others or n == 1 else math.nan
            own = {key: v for key, v in best.items() if key != "kept_for_n"}
            kept.append(dict(own, sample=k, n=n, kl_est=selection + best["kl_sum"],
                             decoded_total=sum(x["decoded"] for x in cands), cost_total=sum(x["cost"] for x in cands)))
            best.setdefault("kept_for_n", []).append(n)
    return kept


def summarise(s: SweepSettings, samples: Sequence[dict]) -> list[dict]:
    """One row per setting of the control — (λ, T), (n, T) or (γ, T); `pareto` marks the settings no other beats
    on both reward and semantic diversity."""
    def cell(lam: float, t: float, gamma: float = 1.0) -> list[dict]:
        return [x for x in samples if x["lambda"] == lam and x["temperature"] == t and x.get("gamma", 1.0) == gamma]

    if s.control == "bon":
        lam = s.lambdas[0]
        kept = {(n, t): best_of_n(s, cell(lam, t), n) for t in s.temperatures for n in s.ns}
        rows = [_row(lam, t, s, kept[n, t], kept[s.ns[0], t], n=n) for n in s.ns for t in s.temperatures]
    elif s.control == "cfg":
        lam, ref = s.lambdas[0], 1.0 if 1.0 in s.gammas else s.gammas[0]
        rows = [_row(lam, t, s, cell(lam, t, g), cell(lam, t, ref), gamma=g) for g in s.gammas for t in s.temperatures]
    else:
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
        x.pop("decoded", None)
    return SweepResult(asdict(s), rows, samples, time.perf_counter() - start)


def run_controls(pg, settings: Sequence[SweepSettings], progress: Progress | None = None,
                 should_stop: Callable[[], bool] = lambda: False, decode: Callable[..., list[dict]] | None = None) -> SweepResult:
    """Several sweeps on the same prompts and seeds (one per control), their rows in one table: `run_sweep` for
    each in turn, progress shared out; `settings` of the result lists each sweep's settings under "sweeps".
    `decode`: as for `run_sweep` (the Ray runner's, for every sweep)."""
    start = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    rows: list[dict] = []
    samples: list[dict] = []
    done: list[dict] = []
    for i, s in enumerate(settings):
        def part(fraction: float, message: str, i: int = i, c: str = s.control) -> None:
            report((i + fraction) / len(settings), f"{c} ({i + 1}/{len(settings)}): {message}")

        result = run_sweep(pg, s, progress=part, should_stop=should_stop, decode=decode)
        rows += result.rows
        samples += [dict(x, control=s.control) for x in result.samples]
        done.append(result.settings)
    first = done[0] if done else {}
    meta = {"sweeps": done, "judge": first.get("judge"), "heldout_judge": first.get("heldout_judge"),
            "prompts": first.get("prompts", ()), "samples": first.get("samples"), "beta_train": first.get("beta_train")}
    return SweepResult(meta, rows, samples, time.perf_counter() - start)
