"""Calibrating DeRa: which λ of adapter A reproduces adapter B? (nominal λ = β_A/β_B vs measured)

Two adapters trained on the same pairs *to the KL-regularised optimum* satisfy π_B ≈ π_λ of A with
λ = β_A/β_B, where ℓ_λ = ℓ_base + λ(ℓ_A − ℓ_base) (the DPO optimum is π_β ∝ π_ref·exp(r/β)). Short LoRA-DPO
runs do not converge, so measure it:

1. sample answers y ~ π_B (λ = 1 of adapter B, temperature 1, no top-p: the policy itself);
2. teacher-force each answer through the base model, adapter A and adapter B (`Playground.teacher_force`)
   and, at every position t, compute KL(π_B(·|x, y<t) ‖ π_λ(·|x, y<t)) over the whole vocabulary, for every
   λ of a grid (float32; only logsumexp(ℓ_base + λ·Δ) depends on λ, the rest is computed once);
3. per prompt: the token-weighted mean over its answers; the curve is the mean over prompts; best λ =
   argmin of the curve (a parabola through the grid minimum and its neighbours refines it);
4. 95% intervals: bootstrap over prompts (resample prompts, keep their answers), re-finding the best λ in
   every resample; the band of the curve is the per-λ percentile interval.

KL(π_B ‖ π_λ) is convex in λ (a log-sum-exp of an affine function minus a linear one), so the minimum is
unique. Nominal λ inside the interval: the pair is consistent with the KL-regularised optimum; outside:
the adapters did not reach it, and λ = β_train/β in the app is nominal only.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from playground.settings.request import LIMITS, DecodeSettings, Limits
from playground.intervals import DEFAULT_BOOTSTRAP, Interval, cluster_bootstrap, paired_difference
from playground.settings.validation import InputError, check_choice, check_int, check_job_cost, check_number, check_prompts


@dataclass(frozen=True)
class CalibrationDefaults:
    """The DeRa check's defaults (CLI and tab)."""

    # Held-out prompts (first N of models/prompts/eval.txt). More = tighter interval (it is over prompts), slower.
    prompts: int = 16
    # Answers sampled from π_B per prompt. More = more tokens per prompt, slower.
    samples: int = 4
    # Answer length cap. Longer = more positions per answer, slower (teacher forcing runs token by token).
    max_new_tokens: int = 64
    # λ grid: 0 … lambda_max in `points` steps; lambda_max defaults to max(2, 2 × nominal λ).
    min_lambda_max: float = 2.0
    points: int = 41
    # The answers are sampled from π_B itself: temperature 1, no nucleus truncation.
    temperature: float = 1.0
    top_p: float = 1.0
    # Teacher-forced passes per answer (base, A, B) on top of sampling it: used for the cost estimate.
    passes: int = 4


CALIBRATION = CalibrationDefaults()


@dataclass(frozen=True)
class CalibrationSettings:
    """One checked calibration run (built by `calibration_settings`)."""

    adapter: str  # A: the adapter whose λ-mix is fitted
    against: str  # B: the adapter it should reproduce
    beta_a: float
    beta_b: float
    prompts: tuple[str, ...]
    samples: int
    max_new_tokens: int
    seed: int
    lambdas: tuple[float, ...]

    @property
    def nominal_lambda(self) -> float:
        """λ = β_A / β_B: exact only if both adapters reached the KL-regularised optimum."""
        return self.beta_a / self.beta_b

    def decode(self, sample: int) -> DecodeSettings:
        """How answer `sample` of a prompt is drawn from π_B: λ = 1, T = 1, no top-p, seed + sample."""
        return DecodeSettings(lam=1.0, mode="logits", temperature=CALIBRATION.temperature, top_p=CALIBRATION.top_p,
                              max_new_tokens=self.max_new_tokens, seed=self.seed + sample)


def lambda_grid(nominal: float, lambda_max: object = None, points: object = None, limits: Limits = LIMITS) -> tuple[float, ...]:
    """0 … lambda_max evenly (default max(2, 2 × nominal), capped at the λ limit)."""
    top = min(max(CALIBRATION.min_lambda_max, 2 * nominal), limits.max_lambda) if lambda_max is None else \
        check_number("lambda_max", lambda_max, 0.0, limits.max_lambda, low_open=True)
    n = CALIBRATION.points if points is None else check_int("lambda_points", points, 5, 401)
    return tuple(float(x) for x in np.round(np.linspace(0.0, top, n), 6))


def calibration_settings(adapters: dict, *, adapter: object, against: object, prompts: object,
                         samples: object = CALIBRATION.samples, max_new_tokens: object = CALIBRATION.max_new_tokens,
                         seed: object = 0, lambda_max: object = None, lambda_points: object = None,
                         limits: Limits = LIMITS) -> CalibrationSettings:
    """Check a whole calibration once. `adapters`: name → entry with `beta_train` (registry or Playground)."""
    names = sorted(adapters)
    a = check_choice("adapter", adapter, names)
    b = check_choice("against", against, names)
    if a == b:
        raise InputError(f"against must be another adapter than adapter ({a!r}): compare two β of the same pairs")
    checked = check_prompts(prompts, limits)
    if len(checked) < 2:
        raise InputError("prompts: give at least 2 (the interval is a bootstrap over prompts)")
    k = check_int("samples", samples, 1, limits.max_samples_per_setting)
    t = check_int("max_new_tokens", max_new_tokens, 1, limits.max_new_tokens)
    s = check_int("seed", seed, 0, limits.max_seed - k)
    beta_a, beta_b = float(adapters[a].beta_train), float(adapters[b].beta_train)
    lams = lambda_grid(beta_a / beta_b, lambda_max, lambda_points, limits)
    check_job_cost(len(checked) * k * CALIBRATION.passes, max(map(len, checked)), t, limits)
    return CalibrationSettings(a, b, beta_a, beta_b, checked, k, t, s, lams)


# --- the math (pure torch, float32; tested on synthetic logits) ------------------------------------------------

def kl_to_mix(l_b, l_base, l_a, lambdas: Sequence[float]):
    """KL(softmax ℓ_B ‖ softmax(ℓ_base + λ(ℓ_A − ℓ_base))) per λ and position: a float32 tensor [L, n].

    l_b, l_base, l_a: [n, V] logits of the same n positions. Σ_v p_B log p_λ = Σ p_B ℓ_λ − logsumexp ℓ_λ, and
    Σ p_B ℓ_λ is affine in λ, so only the logsumexp is evaluated per λ.
    """
    import torch

    l_b, l_base, l_a = (x.float() for x in (l_b, l_base, l_a))
    logp_b = torch.log_softmax(l_b, dim=-1)
    p_b = logp_b.exp()
    neg_entropy = (p_b * logp_b).sum(-1)  # Σ p_B log p_B, [n]
    delta = l_a - l_base
    pb_base, pb_delta = (p_b * l_base).sum(-1), (p_b * delta).sum(-1)
    rows = []
    for lam in lambdas:
        mix = l_base + float(lam) * delta  # ℓ_λ, float32
        rows.append(neg_entropy - (pb_base + float(lam) * pb_delta - torch.logsumexp(mix, dim=-1)))
    return torch.stack(rows).clamp_min(0.0)


def best_on_grid(lambdas: Sequence[float], curve: Sequence[float]) -> float:
    """argmin of a curve on an evenly spaced grid, refined by the parabola through the minimum and its neighbours."""
    y = np.asarray(curve, dtype=np.float64)
    i = int(np.nanargmin(y))
    if 0 < i < len(y) - 1:
        denom = y[i - 1] - 2 * y[i] + y[i + 1]
        if denom > 0:
            step = (lambdas[i + 1] - lambdas[i - 1]) / 2
            return float(lambdas[i] + step * 0.5 * (y[i - 1] - y[i + 1]) / denom)
    return float(lambdas[i])


def bootstrap_best(lambdas: Sequence[float], per_prompt: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP,
                   seed: int = 0) -> tuple[Interval, np.ndarray, np.ndarray]:
    """(best λ with its 95% interval, curve low, curve high) from per-prompt curves [P, L], resampling prompts."""
    k = np.asarray(per_prompt, dtype=np.float64)
    p = k.shape[0]
    estimate = best_on_grid(lambdas, k.mean(0))
    if p < 2:
        nan = np.full(k.shape[1], math.nan)
        return Interval(estimate, math.nan, math.nan, p), nan, nan
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, p, p), minlength=p) for _ in range(n_boot)])  # [B, P]
    curves = counts @ k / p  # [B, L]
    bests = np.array([best_on_grid(lambdas, c) for c in curves])
    lo, hi = np.percentile(bests, [2.5, 97.5])
    band_lo, band_hi = np.percentile(curves, [2.5, 97.5], axis=0)
    return Interval(estimate, float(lo), float(hi), p), band_lo, band_hi


# --- the run ---------------------------------------------------------------------------------------------------

class CalibrationCancelled(RuntimeError):
    """The run was stopped (Cancel or time limit) before it finished."""


@dataclass
class CalibrationResult:
    adapter: str
    against: str
    beta_a: float
    beta_b: float
    nominal_lambda: float
    best_lambda: float
    best_lambda_lo: float
    best_lambda_hi: float
    at_edge: bool  # the minimum lies at the end of the grid: widen it
    lambdas: list[float]
    kl_mean: list[float]  # mean per-token KL(π_B ‖ π_λ), nats, per λ of the grid
    kl_lo: list[float]
    kl_hi: list[float]
    kl_at: dict  # "base" (λ=0), "nominal", "tuned" (λ=1), "best" (grid minimum): [estimate, low, high]
    nominal_minus_best: list[float]  # paired KL(nominal) − KL(best): [estimate, low, high]
    explained: float  # 1 − KL(best)/KL(λ=0): how much of B's departure from the base the λ-mix of A reproduces
    n_prompts: int
    samples: int
    tokens: int
    settings: dict
    per_prompt: list[dict] = field(default_factory=list)  # prompt, tokens, kl at the grid λs
    wall_s: float = 0.0

    @property
    def reached(self) -> bool:
        """Nominal λ inside the 95% interval of the best λ: consistent with the KL-regularised optimum."""
        return self.best_lambda_lo <= self.nominal_lambda <= self.best_lambda_hi

    def to_dict(self) -> dict:
        return asdict(self) | {"reached_optimum": self.reached, "verdict": verdict(self)}


def verdict(r: CalibrationResult) -> str:
    """'nominal λ = X, best λ = Y [lo, hi]: the adapters did (not) reach the KL-regularised optimum'."""
    reached = r.best_lambda_lo <= r.nominal_lambda <= r.best_lambda_hi
    text = (f"nominal λ = {r.nominal_lambda:.3g}, best λ = {r.best_lambda:.3g} [{r.best_lambda_lo:.3g}, {r.best_lambda_hi:.3g}]: "
            + ("the adapters are consistent with the KL-regularised optimum (nominal λ inside the 95% interval)" if reached else
               "the adapters did not reach the KL-regularised optimum (nominal λ outside the 95% interval)"))
    if r.at_edge:
        text += "; the minimum lies at the edge of the λ grid: widen it"
    return text


def _progress_noop(fraction: float, message: str) -> None:
    pass


def answer_sums(pg, s: CalibrationSettings, prompts: Sequence[int], progress: Callable[[float, str], None] = _progress_noop,
                should_stop: Callable[[], bool] = lambda: False) -> list[dict | None]:
    """Steps 1–2 for the prompts of index `prompts`: per (prompt i, answer k), i in that order and k ascending, the
    answer's KL sums over its positions at every grid λ (`kl`) and at λ = 0, nominal, 1 (`extra`), and its tokens;
    None for an empty answer. Each answer has its own seed (seed + k) and is forced alone, so the sums do not depend
    on which prompts share the call (the Ray runner calls this per shard)."""
    import torch

    prompt_ids = {i: pg.encode(s.prompts[i]) for i in prompts}
    jobs = [(i, k) for i in prompts for k in range(s.samples)]
    reqs = [pg.request(prompt_ids[i], s.against, s.decode(k)) for i, k in jobs]
    answers: list[list[int]] = []
    chunk = LIMITS.max_sweep_rows
    sample_share = 0.3
    for c in range(0, len(reqs), chunk):
        part = reqs[c:c + chunk]
        streams = []
        for step, streams in enumerate(pg.stream(part, should_stop=should_stop), 1):
            if step % 8 == 0:
                done = c + len(part) * min(1.0, step / s.max_new_tokens)
                progress(sample_share * done / len(reqs), "sampling answers from π_B")
        if should_stop():
            raise CalibrationCancelled("calibration stopped while sampling")
        answers.extend(list(st.tokens) for st in streams)
    grid = list(s.lambdas) + [0.0, s.nominal_lambda, 1.0]  # the grid, then λ = 0 (base), nominal, 1 (A as trained)
    tuned = replace_lam(s.decode(0), 1.0)
    out: list[dict | None] = []
    for j, ((i, k), tokens) in enumerate(zip(jobs, answers)):
        if should_stop():
            raise CalibrationCancelled("calibration stopped while teacher-forcing")
        if not tokens:
            out.append(None)
            continue
        cont = tokens[:-1]  # n logits: position t predicts tokens[t]
        # one teacher-forced pass for the three policies: base (λ = 0), A and B as trained (λ = 1)
        logits = torch.stack(pg.teacher_force(prompt_ids[i], [None, s.adapter, s.against],
                                              [replace_lam(tuned, 0.0), tuned, tuned], cont))  # [n, 3, V]
        l_base, l_a, l_b = logits[:, 0], logits[:, 1], logits[:, 2]
        sums = kl_to_mix(l_b, l_base, l_a, grid).sum(-1).double().numpy()  # [L + 3]
        out.append({"prompt": i, "kl": sums[:len(s.lambdas)], "extra": sums[len(s.lambdas):], "tokens": len(tokens)})
        progress(sample_share + (1 - sample_share) * (j + 1) / len(jobs), f"teacher-forcing answer {j + 1}/{len(jobs)}")
    return out


def run_calibration(pg, s: CalibrationSettings, progress: Callable[[float, str], None] = _progress_noop,
                    should_stop: Callable[[], bool] = lambda: False, n_boot: int = DEFAULT_BOOTSTRAP,
                    sums: Callable[..., list[dict | None]] | None = None) -> CalibrationResult:
    """Sample from π_B through the facade, teacher-force under base, A and B, and fit λ (see the module docstring).
    `sums` replaces `answer_sums` (same arguments; the Ray runner computes them on a cluster, `pg` is then unused)."""
    start = time.perf_counter()
    lambdas = list(s.lambdas)
    per_answer = (sums or answer_sums)(pg, s, list(range(len(s.prompts))), progress, should_stop)
    kl_sum = np.zeros((len(s.prompts), len(lambdas)))
    extra_sum = np.zeros((len(s.prompts), 3))
    n_tok = np.zeros(len(s.prompts), dtype=np.int64)
    for answer in per_answer:  # in (prompt, k) order, as they were decoded: the same additions, the same sums
        if answer is not None:
            kl_sum[answer["prompt"]] += answer["kl"]
            extra_sum[answer["prompt"]] += answer["extra"]
            n_tok[answer["prompt"]] += answer["tokens"]
    keep = n_tok > 0
    per_prompt = kl_sum[keep] / n_tok[keep, None]  # token-weighted mean per prompt, [P, L]
    per_extra = extra_sum[keep] / n_tok[keep, None]
    best, band_lo, band_hi = bootstrap_best(lambdas, per_prompt, n_boot=n_boot, seed=s.seed)
    i_best = int(np.argmin(per_prompt.mean(0)))
    clusters = list(range(per_prompt.shape[0]))

    def interval(values) -> list[float]:
        iv = cluster_bootstrap(values, clusters, n_boot=n_boot, seed=s.seed)
        return [round(iv.estimate, 6), round(iv.low, 6), round(iv.high, 6)]

    kl_at = {"base": interval(per_extra[:, 0]), "nominal": interval(per_extra[:, 1]), "tuned": interval(per_extra[:, 2]),
             "best": interval(per_prompt[:, i_best])}
    gap = paired_difference(per_prompt[:, i_best], per_extra[:, 1], clusters, n_boot=n_boot, seed=s.seed)
    kept_prompts = [p for p, ok in zip(s.prompts, keep) if ok]
    curve = per_prompt.mean(0)
    base_kl = float(per_extra[:, 0].mean())
    result = CalibrationResult(
        adapter=s.adapter, against=s.against, beta_a=s.beta_a, beta_b=s.beta_b, nominal_lambda=s.nominal_lambda,
        best_lambda=round(best.estimate, 4), best_lambda_lo=round(best.low, 4), best_lambda_hi=round(best.high, 4),
        at_edge=i_best in (0, len(lambdas) - 1), lambdas=lambdas, kl_mean=[round(float(x), 6) for x in curve],
        kl_lo=[round(float(x), 6) for x in band_lo], kl_hi=[round(float(x), 6) for x in band_hi], kl_at=kl_at,
        nominal_minus_best=[round(gap.estimate, 6), round(gap.low, 6), round(gap.high, 6)],
        explained=round(1 - float(curve[i_best]) / base_kl, 4) if base_kl > 0 else math.nan,
        n_prompts=int(keep.sum()), samples=s.samples, tokens=int(n_tok.sum()),
        settings={"adapter": s.adapter, "against": s.against, "prompts": len(s.prompts), "samples": s.samples,
                  "max_new_tokens": s.max_new_tokens, "seed": s.seed, "temperature": CALIBRATION.temperature,
                  "top_p": CALIBRATION.top_p, "lambda_max": lambdas[-1], "lambda_points": len(lambdas), "bootstrap": n_boot},
        per_prompt=[{"prompt": p, "tokens": int(n), "kl": [round(float(x), 5) for x in row]}
                    for p, n, row in zip(kept_prompts, n_tok[keep], per_prompt)],
        wall_s=round(time.perf_counter() - start, 1),
    )
    progress(1.0, "done")
    return result


def replace_lam(d: DecodeSettings, lam: float) -> DecodeSettings:
    return replace(d, lam=lam)


# --- figure ----------------------------------------------------------------------------------------------------

def calibration_figure(r: CalibrationResult):
    """KL(π_B ‖ π_λ) vs λ with its 95% band; nominal λ (dashed) and best λ with its interval (shaded) marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=110)
    ax = fig.add_subplot()
    ax.fill_between(r.lambdas, r.kl_lo, r.kl_hi, color="tab:blue", alpha=0.2, label="95% interval (bootstrap over prompts)")
    ax.plot(r.lambdas, r.kl_mean, color="tab:blue", lw=1.8, label="mean per-token KL(π_B ‖ π_λ)")
    ax.axvspan(r.best_lambda_lo, r.best_lambda_hi, color="tab:green", alpha=0.15)
    ax.axvline(r.best_lambda, color="tab:green", lw=1.5,
               label=f"best λ = {r.best_lambda:.3g} [{r.best_lambda_lo:.3g}, {r.best_lambda_hi:.3g}]")
    ax.axvline(r.nominal_lambda, color="tab:red", ls="--", lw=1.5, label=f"nominal λ = β_A/β_B = {r.nominal_lambda:.3g}")
    ax.set_xlabel("λ (DeRa mix of adapter A: ℓ_base + λ(ℓ_A − ℓ_base))")
    ax.set_ylabel("mean per-token KL (nats)")
    ax.set_title(f"DeRa check: A = {r.adapter} (β {r.beta_a:g}), B = {r.against} (β {r.beta_b:g}), "
                 f"{r.n_prompts} prompts × {r.samples}", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig
