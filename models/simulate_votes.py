"""RLHF vs RLAIF with a simulated voter: duels on the shipped model, votes with a KNOWN preference, the
analysis of those votes, and the data to train one adapter on the votes and one on an AI judge's labels of
the SAME answer pairs.

    python models/simulate_votes.py generate [--n 240] [--adapter upbeat-b0.1] [--max-new-tokens 48] [--noise 0.15]
    python models/simulate_votes.py report   [--out docs/feedback_simulated.json] [--figure docs/feedback_bt.png]
    python models/simulate_votes.py ai-pairs --judge concise --out-dir runs/sim-ai-pairs
    python models/simulate_votes.py compare  --adapter NAME=DIR ... [--out docs/feedback_rlhf_vs_rlaif.json]
    python models/simulate_votes.py table    [--input docs/feedback_rlhf_vs_rlaif.json]   # markdown for the README

`generate` runs the app's own duel code IN PROCESS (`playground.feedback.duel.DuelService` on the shipped
`Playground`, not over HTTP: the HTTP path is exercised by tests/feedback/test_reliability.py on the tiny model,
and in-process lets many duels decode in one batch, which the 2-core CPU needs). Each duel is a prompt of
models/prompts/train.txt answered at two different λ of the adapter (from FeedbackSettings.duel_lambdas), in
random order. The voter is `CloserInMeaningVoter` with the shipped all-MiniLM-L6-v2: it prefers the answer
whose embedding is closer to the prompt's (the same quantity as the `on_topic` judge), and flips a decisive
choice with probability --noise. Votes go to an SQLite file (default runs/simulated-votes/votes.sqlite3)
with source "simulated", through the same `VoteStore` the app uses. The run is resumable: duel i is drawn
from seed (seed, i), and `generate` continues after the votes already stored.

`report` prints/writes each judge's agreement with the votes (Wilson 95% CIs), the Bradley–Terry fit per
(λ, T) arm (bootstrap 95% CIs) and the length effect, plus the figure. `ai-pairs` writes pairs.jsonl of the
same decisive votes, re-labelled by an AI judge's stored scores (judge ties dropped), for
`models/train_adapter.py all --pairs-from DIR`. `compare` decodes held-out prompts (models/prompts/eval.txt)
with each trained adapter at λ = 0 (base) and λ = 1 and reports every judge's reward, KL to the base model and
diversity, with 95% intervals bootstrapped over prompts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep on a shared CPU

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from playground.feedback.config import FeedbackSettings, load_or_create_salt, sqlite_url  # noqa: E402

DEFAULT_DB = REPO_ROOT / "runs" / "simulated-votes" / "votes.sqlite3"
PROMPTS = REPO_ROOT / "models" / "prompts" / "train.txt"
EVAL_PROMPTS = REPO_ROOT / "models" / "prompts" / "eval.txt"
SESSION = "simulated-voter"
JUDGES = ("on_topic", "concise", "upbeat")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def db_settings(db: Path) -> FeedbackSettings:
    db.parent.mkdir(parents=True, exist_ok=True)
    return FeedbackSettings(database_url=sqlite_url(db), data_dir=db.parent, salt=load_or_create_salt(db.parent))


def read_prompts(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def duel_prompts(path: Path, n: int, seed: int) -> list[str]:
    """n prompts of the file in a seeded random order (without replacement while the file lasts)."""
    import numpy as np

    prompts = read_prompts(path)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(prompts)) for _ in range(n // len(prompts) + 1)])
    return [prompts[i] for i in order[:n]]


# --------------------------------------------------------------------------------------------- generate
def cmd_generate(args: argparse.Namespace) -> int:
    import numpy as np

    from playground.feedback.duel import DuelService
    from playground.feedback.store import VoteStore
    from playground.feedback.voters import CloserInMeaningVoter
    from playground.judges.embeddings import get_embedder
    from playground.service import Playground

    settings = db_settings(Path(args.db))
    store = VoteStore.open(settings)
    done = store.count()
    prompts = duel_prompts(Path(args.prompts), args.n, args.seed)
    if done >= args.n:
        log(f"generate: {store.where} already holds {done} votes (≥ {args.n}); nothing to do")
        return 0
    start = time.perf_counter()
    pg = Playground.from_registry(adapters=[args.adapter])
    log(f"generate: shipped model and {args.adapter} loaded in {time.perf_counter() - start:.1f} s; "
        f"{args.n - done} duels to go ({done} stored), batch {args.batch}, ≤{args.max_new_tokens} tokens, T={args.temperature}")
    service = DuelService(pg, lambda: store, limits=settings, max_new_tokens=args.max_new_tokens)
    embedder = get_embedder()
    voter = CloserInMeaningVoter(embedder.encode, noise=args.noise)
    start = time.perf_counter()
    for first in range(done, args.n, args.batch):
        idx = list(range(first, min(first + args.batch, args.n)))
        duels = service.start_many([prompts[i] for i in idx], args.adapter, args.temperature, SESSION,
                                   seeds=[args.seed * 1_000_003 + i for i in idx])
        for i, duel in zip(idx, duels, strict=True):
            rng = np.random.default_rng([args.seed, i])
            outcome = voter.vote(duel.prompt, duel.answer_a, duel.answer_b, duel.settings_a, duel.settings_b, rng)
            service.vote(duel.duel_id, outcome, SESSION, source="simulated")
        elapsed = time.perf_counter() - start
        made = idx[-1] + 1 - done
        left = elapsed / made * (args.n - idx[-1] - 1)
        log(f"generate: {idx[-1] + 1}/{args.n} votes stored, {elapsed:.0f} s, ~{left:.0f} s left")
    meta = {"n": args.n, "adapter": args.adapter, "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
            "noise": args.noise, "seed": args.seed, "voter": "CloserInMeaningVoter (all-MiniLM-L6-v2 cosine to the prompt)",
            "duel_lambdas": list(settings.duel_lambdas), "prompts": str(Path(args.prompts).relative_to(REPO_ROOT))
            if Path(args.prompts).resolve().is_relative_to(REPO_ROOT) else args.prompts,
            "in_process": "DuelService.start_many on the shipped Playground (not HTTP)"}
    meta_path = Path(args.db).with_name("simulation.json")
    previous = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta["seconds"] = round(previous.get("seconds", 0.0) + time.perf_counter() - start, 1)
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    log(f"generate: done; {store.count()} votes in {store.where}; settings in {meta_path}")
    store.close()
    return 0


# ----------------------------------------------------------------------------------------------- report
def load_votes(db: Path) -> list:
    from playground.feedback.store import VoteStore

    if not db.is_file():
        raise SystemExit(f"{db} does not exist; run `generate` first")
    with VoteStore(sqlite_url(db)) as store:
        return store.votes()


def cmd_report(args: argparse.Namespace) -> int:
    from playground.cli.votes import format_report
    from playground.feedback.analysis import report
    from playground.feedback.plots import bradley_terry_figure

    db = Path(args.db)
    votes = load_votes(db)
    rep = report(votes, n_boot=args.boot, seed=0)
    meta_path = db.with_name("simulation.json")
    rep["simulation"] = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    rep["expected"] = ("The voter's noise-free choice is the answer with the higher MiniLM cosine to the prompt, i.e. "
                       "the on_topic judge's choice; with noise ε it agrees with on_topic on ≈ 1 − ε of decisive votes.")
    print(format_report(rep))
    if args.out:
        Path(args.out).write_text(json.dumps(rep, indent=1, ensure_ascii=False) + "\n")
        log(f"report: wrote {args.out}")
    if args.figure:
        fig = bradley_terry_figure(rep["bradley_terry"], title="Simulated voter: Bradley–Terry strength per setting")
        fig.savefig(args.figure, dpi=110)
        log(f"report: wrote {args.figure}")
    return 0


# --------------------------------------------------------------------------------------------- ai-pairs
def ai_pairs(votes: list, judge: str) -> tuple[list[dict], dict[str, int]]:
    """The decisive votes' answer pairs, labelled by `judge`'s stored scores instead of the voter.
    Counts: pairs written, judge ties dropped, agree / disagree with the human label, non-decisive votes."""
    rows, counts = [], {"written": 0, "judge_ties": 0, "agree_with_votes": 0, "disagree_with_votes": 0,
                        "not_decisive": 0, "unscored": 0}
    for v in votes:
        if v.outcome not in ("a", "b"):
            counts["not_decisive"] += 1
            continue
        if judge not in v.judge_scores:
            counts["unscored"] += 1
            continue
        score_a, score_b = v.judge_scores[judge]
        if score_a == score_b or v.answer_a == v.answer_b:
            counts["judge_ties"] += 1
            continue
        a_wins = score_a > score_b
        chosen, rejected = (v.answer_a, v.answer_b) if a_wins else (v.answer_b, v.answer_a)
        counts["agree_with_votes" if a_wins == (v.outcome == "a") else "disagree_with_votes"] += 1
        rows.append({"prompt": v.prompt, "conversation": [dict(m) for m in v.conversation], "chosen": chosen,
                     "rejected": rejected, "margin": abs(score_a - score_b), "chosen_score": max(score_a, score_b),
                     "rejected_score": min(score_a, score_b), "vote_id": getattr(v, "id", None)})
        counts["written"] += 1
    return rows, counts


def cmd_ai_pairs(args: argparse.Namespace) -> int:
    votes = load_votes(Path(args.db))
    rows, counts = ai_pairs(votes, args.judge)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pairs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (out / "run.json").write_text(json.dumps({"name": out.name, "settings": {"judge": args.judge},
                                              "pairs_stats": {**counts, "source": f"votes in {args.db}, "
                                                              f"re-labelled by the {args.judge} judge"},
                                              "timings": {}}, indent=1) + "\n")
    log(f"ai-pairs: {counts} → {out / 'pairs.jsonl'}")
    return 0


# ---------------------------------------------------------------------------------------------- compare
def _triple(iv) -> list[float]:
    """[estimate, low, high] of a playground.intervals.Interval."""
    return [float(iv.estimate), float(iv.low), float(iv.high)]


def cmd_compare(args: argparse.Namespace) -> int:
    import numpy as np

    from playground.lm.loading import load_base
    from playground.registry import get_base
    from playground.service import AdapterInfo, Playground
    from playground.settings.server import model_dtype_name
    from playground.intervals import cluster_bootstrap, grouped_difference
    from playground.tradeoff.sweep import run_sweep
    from playground.settings.validation import sweep_settings

    infos = []
    for spec in args.adapter:
        name, _, path = spec.partition("=")
        card = json.loads((Path(path) / "card.json").read_text())
        infos.append(AdapterInfo(name, Path(path), float(card["beta"]), str(card["judge"])))
    from playground.registry import BASE_MODELS
    from playground.service import resolve_dtype

    source = get_base(args.base).source if args.base in BASE_MODELS else args.base
    base = load_base(source, dtype=resolve_dtype(model_dtype_name()))
    pg = Playground(base, infos, base_names=[args.base] if args.base in BASE_MODELS else [])
    prompts = read_prompts(Path(args.prompts))[: args.limit]
    out: dict = {"prompts": len(prompts), "samples": args.samples, "max_new_tokens": args.max_new_tokens,
                 "temperature": args.temperature, "judges": list(JUDGES), "adapters": {}}
    for info in infos:
        s = sweep_settings(pg.adapters, JUDGES, adapter=info.name, prompts=prompts, lambdas=[0.0, 1.0],
                           temperatures=[args.temperature], samples=args.samples, max_new_tokens=args.max_new_tokens,
                           seed=args.seed, judge="on_topic", heldout_judge="concise")
        start = time.perf_counter()
        result = run_sweep(pg, s)
        samples = result.samples
        for j in JUDGES:  # every judge on every answer
            scores = pg.judge(j).score([prompts[x["prompt_index"]] for x in samples], [x["text"] for x in samples])
            for x, sc in zip(samples, scores, strict=True):
                x[j] = float(sc)
        cells = {}
        for lam in (0.0, 1.0):
            group = [x for x in samples if x["lambda"] == lam]
            ids = [x["prompt_index"] for x in group]
            cell = {j: _triple(cluster_bootstrap([x[j] for x in group], ids)) for j in JUDGES}
            row = next(r for r in result.rows if r["lambda"] == lam)
            cell.update({"kl_to_base": row["kl_to_base"], "kl_seq": row["kl_seq"], "distinct_2": row.get("distinct_2"),
                         "semantic_diversity": [row["semantic_diversity"], row["semantic_diversity_lo"],
                                                row["semantic_diversity_hi"]],
                         "length_mean": row["length_mean"], "boilerplate": row["boilerplate"]})
            cells["base" if lam == 0.0 else "tuned"] = cell
        base_rows = [x for x in samples if x["lambda"] == 0.0]
        tuned_rows = [x for x in samples if x["lambda"] == 1.0]
        cells["gain"] = {j: _triple(grouped_difference([(x["prompt_index"], x[j]) for x in base_rows],
                                                       [(x["prompt_index"], x[j]) for x in tuned_rows]))
                         for j in JUDGES}  # tuned − base, paired by prompt (same seeds)
        cells["voter_prefers_tuned"] = held_out_votes(prompts, base_rows, tuned_rows, args.noise, args.seed)
        out["adapters"][info.name] = {"path": str(info.path), "judge": info.judge, "beta": info.beta_train, **cells,
                                      "seconds": round(time.perf_counter() - start, 1),
                                      "mean_words_tuned": float(np.mean([len(x["text"].split()) for x in samples
                                                                         if x["lambda"] == 1.0]))}
        log(f"compare: {info.name} done in {time.perf_counter() - start:.0f} s")
    text = json.dumps(out, indent=1, ensure_ascii=False) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        log(f"compare: wrote {args.out}")
    print(text)
    return 0


def held_out_votes(prompts: list[str], base_rows: list[dict], tuned_rows: list[dict], noise: float, seed: int) -> dict:
    """The simulated voter (same rule and noise as the training votes, fresh seed) judges base vs tuned answers
    of held-out prompts, paired by (prompt, sample): share of decisive votes for the tuned answer, 95% CI
    bootstrapped over prompts, noisy and noise-free (the voter's rule alone)."""
    import numpy as np

    from playground.feedback.voters import CloserInMeaningVoter
    from playground.judges.embeddings import get_embedder
    from playground.intervals import cluster_bootstrap

    voter = CloserInMeaningVoter(get_embedder().encode, noise=noise)
    rng = np.random.default_rng(seed + 10_000)  # not the training votes' stream
    base = {(x["prompt_index"], x["sample"]): x for x in base_rows}
    noisy, clean, ids = [], [], []
    for t in tuned_rows:
        b = base.get((t["prompt_index"], t["sample"]))
        if b is None:
            continue
        p = prompts[t["prompt_index"]]
        rule = voter.prefer(p, t["text"], b["text"], {}, {})
        vote = voter.vote(p, t["text"], b["text"], {}, {}, rng)
        if vote != "tie":
            noisy.append(float(vote == "a"))
            clean.append(float(rule == "a"))
            ids.append(t["prompt_index"])
    return {"votes": len(noisy), "noisy": _triple(cluster_bootstrap(noisy, ids)),
            "noise_free": _triple(cluster_bootstrap(clean, ids)), "noise": noise}


def cmd_table(args: argparse.Namespace) -> int:
    """The `compare` JSON as the README's markdown table (gains are tuned − base, paired by prompt, 95% CI)."""
    r = json.loads(Path(args.input).read_text())

    def ci(t: list[float]) -> str:
        return f"{t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]"

    print("| adapter | held-out votes for tuned over base | Δ on_topic (the voter's rule) | Δ concise | Δ upbeat "
          "| KL to base (nats/token) | meaning diversity base → tuned | distinct-2 base → tuned | words (tuned) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, a in r["adapters"].items():
        g = a["gain"]
        v = a.get("voter_prefers_tuned")
        shown = f"{v['noisy'][0]:.0%} [{v['noisy'][1]:.0%}, {v['noisy'][2]:.0%}] of {v['votes']}" if v else "–"
        print(f"| {name} ({'votes' if a['judge'] == 'on_topic' else a['judge'] + ' judge'}) | {shown} | {ci(g['on_topic'])} "
              f"| {ci(g['concise'])} | {ci(g['upbeat'])} | {a['tuned']['kl_to_base']:.4f} "
              f"| {a['base']['semantic_diversity'][0]:.3f} → {a['tuned']['semantic_diversity'][0]:.3f} "
              f"| {a['base']['distinct_2']:.3f} → {a['tuned']['distinct_2']:.3f} | {a['mean_words_tuned']:.1f} |")
    print(f"\n{r['prompts']} held-out prompts × {r['samples']} samples, ≤{r['max_new_tokens']} tokens, T {r['temperature']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default=str(DEFAULT_DB), help="SQLite file of the simulated votes")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="duels on the shipped model, voted by the simulated voter")
    g.add_argument("--n", type=int, default=240, help="duels (= votes)")
    g.add_argument("--adapter", default="upbeat-b0.1")
    g.add_argument("--prompts", default=str(PROMPTS))
    g.add_argument("--max-new-tokens", type=int, default=48)
    g.add_argument("--temperature", type=float, default=0.7)
    g.add_argument("--noise", type=float, default=0.15, help="probability a decisive choice is flipped")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch", type=int, default=12, help="duels decoded together (2 answers each)")
    g.set_defaults(func=cmd_generate)
    r = sub.add_parser("report", help="judge agreement, Bradley–Terry fit and length effect of the votes")
    r.add_argument("--boot", type=int, default=1000)
    r.add_argument("--out", default=None, help="JSON report")
    r.add_argument("--figure", default=None, help="Bradley–Terry PNG")
    r.set_defaults(func=cmd_report)
    a = sub.add_parser("ai-pairs", help="the votes' answer pairs re-labelled by an AI judge (pairs.jsonl)")
    a.add_argument("--judge", required=True, choices=JUDGES)
    a.add_argument("--out-dir", required=True)
    a.set_defaults(func=cmd_ai_pairs)
    c = sub.add_parser("compare", help="held-out rewards, KL and diversity of trained adapters")
    c.add_argument("--adapter", action="append", required=True, help="NAME=DIR of an exported adapter (card.json)")
    c.add_argument("--base", default="smollm2-135m-instruct", help="registry name or model directory")
    c.add_argument("--prompts", default=str(EVAL_PROMPTS))
    c.add_argument("--limit", type=int, default=24)
    c.add_argument("--samples", type=int, default=4)
    c.add_argument("--max-new-tokens", type=int, default=48)
    c.add_argument("--temperature", type=float, default=0.7)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--noise", type=float, default=0.15, help="the held-out voter's flip rate (as in generate)")
    c.add_argument("--out", default=None)
    c.set_defaults(func=cmd_compare)
    t = sub.add_parser("table", help="the compare JSON as a markdown table")
    t.add_argument("--input", default=str(REPO_ROOT / "docs" / "feedback_rlhf_vs_rlaif.json"))
    t.set_defaults(func=cmd_table)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
