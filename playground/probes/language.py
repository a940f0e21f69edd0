"""Probe 5: language — does a preference learned on English prompts act the same way in other languages?

Twelve everyday prompts written in English, Korean, Spanish, German and French (`data/language.json`,
each translation checked by langid). Per language and λ:

- `in_language`: share of answers that langid.py (`metrics.language_of`) reads as the prompt's language;
- `kl_to_base`: mean per-token KL(π_λ ‖ π_base) the engine reported for the answer (left out when it reports none);
- `reward.<judge>` for each judge in `ProbeContext.judges`: its mean reward; the Δ vs the reference λ is the
  reward shift the adapter causes in that language;
- `shift_vs_en.<judge>` (λ ≠ reference only): the reward shift in that language minus the shift on the same
  prompt in English, bootstrapped over the twelve prompts; "within noise" means the preference moved the
  reward as much as it does in English.

The shipped judges read English only (VADER's lexicon; all-MiniLM-L6-v2 was trained on English): on an
answer in another language their reward sees little but English words, names and emoji, so a flat shift
there can mean "the judge cannot read it" as much as "the adapter did nothing"; `in_language` says how many
answers were in the prompt's language.
"""
from __future__ import annotations

import math

import numpy as np

from playground.probes.base import BaseProbe, Generated, ProbeContext, ProbeRow, ProbeSettings, load_data, user
from playground.probes.result import Example, MetricRow, MetricSpec, ProbeResult
from playground.probes.statistics import max_lambda_row, mean_interval, per_lambda, pick_examples, trend
from playground.intervals import noise_label

ENGLISH_ONLY_JUDGES = ("upbeat", "concise")


class LanguageProbe(BaseProbe):
    name = "language"
    title = "Language: the same prompts in five languages"
    description = ("Per prompt language (en, ko, es, de, fr): share of answers in that language, KL to the base "
                   "model and each judge's reward shift; worse = answers leave the prompt's language, or the "
                   "preference shifts the reward differently than in English.")
    metrics = (
        MetricSpec("in_language", "answers that langid reads as the prompt's language", "lower"),
        MetricSpec("kl_to_base", "mean per-token KL(π_λ ‖ π_base) of the answer", None),
        MetricSpec("reward.<judge>", "the judge's mean reward; its Δ vs the reference λ is the adapter's reward shift", None),
        MetricSpec("shift_vs_en.<judge>", "reward shift in this language minus the shift on the same prompt in "
                   "English (0 = acts as in English)", None),
    )
    needs = ("langid", "judge")

    def rows(self, settings: ProbeSettings) -> list[ProbeRow]:
        data = load_data("language")
        out: list[ProbeRow] = []
        for item in settings.take(data["prompts"]):
            for lang in data["languages"]:
                out += settings.grid(f"{item['id']}.{lang}", user(item[lang]), {"lang": lang, "item": item["id"]})
        return out

    def measure(self, generated: list[Generated], ctx: ProbeContext, settings: ProbeSettings) -> ProbeResult:
        langs = [lang for lang in load_data("language")["languages"] if any(g.row.meta["lang"] == lang for g in generated)]
        detect = ctx.get_langid()
        answers = [g.text for g in generated]
        prompts = [g.row.prompt for g in generated]
        got = [detect(t) for t in answers]
        rewards = {name: np.asarray(ctx.get_judge(name).score(prompts, answers), dtype=np.float64) for name in ctx.judges}
        rows: list[MetricRow] = []
        findings: list[str] = []
        for lang in langs:
            idx = [i for i, g in enumerate(generated) if g.row.meta["lang"] == lang]
            key = [(generated[i].row.lam, generated[i].row.prompt_id) for i in idx]
            rows += per_lambda("in_language", [(*k, float(got[i] == lang)) for k, i in zip(key, idx, strict=True)], settings, ctx,
                               binary=True, group=lang)
            kls = [generated[i].kl_to_base for i in idx]
            if any(v is not None for v in kls):
                kl_rec = [(*k, math.nan if v is None else float(v)) for k, v in zip(key, kls, strict=True)]
                rows += per_lambda("kl_to_base", kl_rec, settings, ctx, binary=False, group=lang)
            for name, r in rewards.items():
                rows += per_lambda(f"reward.{name}", [(*k, float(r[i])) for k, i in zip(key, idx, strict=True)], settings, ctx,
                                   binary=False, group=lang)
        if "en" in langs:
            for name, r in rewards.items():
                rows += self._shift_vs_english(generated, r, langs, settings, ctx, name)
        for lang in langs:
            findings += [s for s in (trend(rows, "in_language", lang), trend(rows, "kl_to_base", lang, 3)) if s]
        for name in rewards:
            parts = []
            for lang in langs:
                hi = max_lambda_row(rows, f"reward.{name}", lang)
                if hi is not None and math.isfinite(hi.vs_reference.estimate):
                    parts.append(f"{lang} {hi.vs_reference.estimate:+.3f} ({hi.noise})")
            if parts:
                lam = max(r.lam for r in rows if r.vs_reference is not None)
                findings.append(f"{name} reward shift at λ={lam:g} vs λ={settings.reference_lambda:g}: " + ", ".join(parts))
        english_only = [n for n in rewards if n in ENGLISH_ONLY_JUDGES]
        if english_only:
            findings.append(f"{', '.join(english_only)} read English only: on answers in other languages their reward "
                            "sees little but English words and emoji; compare with in_language.")
        order = sorted(range(len(generated)), key=lambda i: got[i] == generated[i].row.meta["lang"])  # mismatches first
        cands = [Example(generated[i].row.lam, generated[i].row.prompt_id, prompts[i], answers[i],
                         f"prompt {generated[i].row.meta['lang']}, answer read as {got[i] or '?'}") for i in order]
        return self.result(rows, settings, pick_examples(cands, settings.lambdas, ctx.examples_per_lambda), findings,
                           {"languages": langs, "english_only_judges": english_only})

    @staticmethod
    def _shift_vs_english(generated: list[Generated], r: np.ndarray, langs: list[str], settings: ProbeSettings,
                          ctx: ProbeContext, name: str) -> list[MetricRow]:
        """Per language ≠ en and λ ≠ reference: mean over prompts of [shift(lang) − shift(en)], by prompt."""
        ref = settings.reference_lambda
        cell: dict[tuple[str, str, float], list[float]] = {}
        for g, v in zip(generated, r, strict=True):
            cell.setdefault((g.row.meta["item"], g.row.meta["lang"], g.row.lam), []).append(float(v))
        mean = {k: float(np.mean(v)) for k, v in cell.items()}
        items = sorted({k[0] for k in cell})
        out = []
        for lang in langs:
            if lang == "en":
                continue
            for lam in settings.lambdas:
                if lam == ref:
                    continue
                vals, ids = [], []
                for it in items:
                    need = [(it, lang, lam), (it, lang, ref), (it, "en", lam), (it, "en", ref)]
                    if all(k in mean for k in need):
                        a, b, c, d = (mean[k] for k in need)
                        vals.append((a - b) - (c - d))
                        ids.append(it)
                iv = mean_interval(vals, ids, n_boot=ctx.n_boot, seed=ctx.seed)
                out.append(MetricRow(f"shift_vs_en.{name}", lam, iv, lang, None, noise_label(iv), len(vals)))
        return out
