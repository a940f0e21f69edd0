"""RLAIF → DPO → LoRA adapter pipeline: an AI judge labels the preferences, TRL's DPOTrainer learns them.

    python models/train_adapter.py all --judge upbeat --name upbeat-b0.1 --beta 0.1
    python models/train_adapter.py all --judge upbeat --name upbeat-b0.5 --beta 0.5 --pairs-from runs/upbeat-b0.1

Steps (each writes plain files under the work dir, default runs/<name>/, and is skipped when its output
exists unless --force):

  sample    models/prompts/train.txt × k sampled answers, scored by the judge   → responses.jsonl
            (--responses-from DIR re-scores DIR/responses.jsonl with this judge instead of sampling anew)
  pairs     best vs worst answer per prompt, near-ties dropped                   → pairs.jsonl
            (--pairs-from DIR copies DIR/pairs.jsonl instead: a second β of the same judge reuses the data)
  train     DPO with a LoRA adapter (TRL DPOTrainer + peft LoraConfig) at --beta → adapter/, train.json
  evaluate  held-out models/prompts/eval.txt, base vs tuned                     → evaluation.json, eval_samples.jsonl
  export    models/adapters/<name>/: adapter_config.json, adapter_model.safetensors, card.json, README.md
  all       every step above in order

--base is a registry name (default: the embedded SmolLM2-135M-Instruct), a Hub id or a local directory
(safetensors only; loaded through playground.lm.loading.load_base). Settings given to an earlier step are
kept in run.json and reused by later steps.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other jobs, spinning threads slow
# torch down by an order of magnitude. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parent.parent

from models.train_config import DEFAULTS, add_config_arguments
from playground.registry import ADAPTER_DIR, BASE_MODELS

STEPS = ("sample", "pairs", "train", "evaluate", "export")
VOTES = "votes"  # --judge votes: the pairs are human (or simulated) votes from the feedback database
VOTES_EVAL_JUDGES = ("on_topic", "concise")  # a votes run is evaluated by these (no judge made its labels)
OTHER_JUDGE = {"upbeat": "concise", "concise": "upbeat"}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# run.json keys each step may record, with their defaults: see models/train_config.py (TrainConfig).


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


class Run:
    """A work dir plus its settings (run.json): CLI values override recorded ones, recorded ones the defaults."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.name = args.name
        self.dir = Path(args.work_dir or REPO_ROOT / "runs" / args.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.force = args.force
        state_file = self.dir / "run.json"
        self.state = json.loads(state_file.read_text()) if state_file.is_file() else {"name": args.name, "timings": {}}
        given = {key: getattr(args, key) for key in DEFAULTS if getattr(args, key, None) is not None}
        self.settings = {**DEFAULTS, **self.state.get("settings", {}), **given}
        self.state["settings"] = self.settings
        self.save()

    def __getattr__(self, key: str) -> Any:
        settings = self.__dict__.get("settings", {})
        if key in settings:
            return settings[key]
        raise AttributeError(key)

    def save(self) -> None:
        write_json(self.dir / "run.json", self.state)

    def path(self, name: str) -> Path:
        return self.dir / name

    def done(self, step: str, output: Path) -> bool:
        if output.exists() and not self.force:
            log(f"{step}: {output} exists, skipping (use --force to redo)")
            return True
        return False

    def timed(self, step: str, seconds: float, **extra: Any) -> None:
        self.state.setdefault("timings", {})[step] = {"seconds": round(seconds, 1), **extra}
        self.save()

    def judge_name(self) -> str:
        if not self.judge:
            raise SystemExit(f"{self.name}: no judge recorded in {self.dir / 'run.json'}; pass --judge upbeat|concise")
        return self.judge

    def other_judge_name(self) -> str | None:
        if self.judge_name() == VOTES:
            return self.other_judge or VOTES_EVAL_JUDGES[1]
        return self.other_judge or OTHER_JUDGE.get(self.judge_name())

    def eval_judge_name(self) -> str:
        """The judge whose reward the evaluation reports first: the run's judge, or on_topic for --judge votes."""
        return VOTES_EVAL_JUDGES[0] if self.judge_name() == VOTES else self.judge_name()

    def export_dir(self) -> Path:
        return Path(self.out) if self.out else ADAPTER_DIR / self.name


def base_source(base: str) -> str:
    """Registry name → its source string; anything else (Hub id, directory) is passed on as is."""
    return BASE_MODELS[base].source if base in BASE_MODELS else base


def load(base: str):
    from playground.lm.loading import load_base

    return load_base(base_source(base))


def load_prompts(path: str, limit: int | None) -> list[str]:
    prompts = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return prompts[:limit] if limit else prompts


def progress_printer(what: str):
    def report(done: int, total: int, seconds: float) -> None:
        eta = seconds / done * (total - done) if done else float("nan")
        log(f"{what}: {done}/{total} prompts, {seconds:.0f}s elapsed, ~{eta:.0f}s left")
    return report


# ------------------------------------------------------------------------------------------------ steps
def step_sample(run: Run) -> None:
    out = run.path("responses.jsonl")
    if run.judge == VOTES:
        log("sample: --judge votes takes both answers of each pair from the vote database, nothing to sample")
        return
    if run.pairs_from:
        log(f"sample: pairs come from {run.pairs_from}, nothing to sample")
        return
    if run.done("sample", out):
        return
    from playground.judges.judges import get_judge
    from models.preferences import sample_responses

    start = time.perf_counter()
    judge = get_judge(run.judge_name())
    if run.responses_from:
        rescore(run, judge, out, start)
        return
    prompts = load_prompts(run.prompts, run.limit)
    loaded = load(run.base)
    log(f"sample: {len(prompts)} prompts × {run.k} answers, ≤{run.max_new_tokens} new tokens, T={run.temperature}, "
        f"top-p {run.top_p}, base {run.base}")
    responses = sample_responses(loaded.model, loaded.tokenizer, prompts, k=run.k, max_new_tokens=run.max_new_tokens,
                                 temperature=run.temperature, top_p=run.top_p, seed=run.seed, batch_size=run.gen_batch_size,
                                 progress=progress_printer("sample"))
    gen_seconds = time.perf_counter() - start
    flat_p = [p for p in prompts for _ in range(run.k)]
    flat_r = [r for rs in responses for r in rs]
    scores = judge.score(flat_p, flat_r).reshape(len(prompts), run.k)
    write_jsonl(out, [{"prompt": p, "responses": rs, "scores": [round(float(s), 5) for s in sc]}
                      for p, rs, sc in zip(prompts, responses, scores)])
    seconds = time.perf_counter() - start
    run.timed("sample", seconds, generation_seconds=round(gen_seconds, 1), prompts=len(prompts), k=run.k)
    log(f"sample: wrote {out} ({len(prompts)} prompts, mean {judge.name} score {scores.mean():+.3f}) in {seconds:.0f}s")


def rescore(run: Run, judge, out: Path, start: float) -> None:
    """Reuse the answers another run sampled (same base and prompts) and label them with this run's judge."""
    src_dir = Path(run.responses_from)
    src = src_dir / "responses.jsonl"
    if not src.is_file():
        raise SystemExit(f"sample: --responses-from {src_dir} has no responses.jsonl; run its sample step first")
    src_run = json.loads((src_dir / "run.json").read_text()) if (src_dir / "run.json").is_file() else {}
    for key in ("base", "prompts", "limit", "k", "max_new_tokens", "temperature", "top_p", "seed"):
        if key in src_run.get("settings", {}):
            run.settings[key] = src_run["settings"][key]
    rows = read_jsonl(src)
    flat_p = [r["prompt"] for r in rows for _ in r["responses"]]
    flat_r = [x for r in rows for x in r["responses"]]
    scores = judge.score(flat_p, flat_r)
    i = 0
    for r in rows:
        r["scores"] = [round(float(x), 5) for x in scores[i:i + len(r["responses"])]]
        i += len(r["responses"])
    write_jsonl(out, rows)
    src_sample = src_run.get("timings", {}).get("sample", {})
    run.state["responses_source"] = str(src)
    run.timed("sample", time.perf_counter() - start + float(src_sample.get("generation_seconds", 0.0)),
              generation_seconds=src_sample.get("generation_seconds"), generated_by=str(src_dir),
              rescore_seconds=round(time.perf_counter() - start, 1), prompts=len(rows), k=run.k)
    log(f"sample: re-scored {len(flat_r)} answers from {src} with {judge.name} "
        f"(mean {scores.mean():+.3f}) in {time.perf_counter() - start:.0f}s")


def step_pairs(run: Run) -> None:
    out = run.path("pairs.jsonl")
    if run.done("pairs", out):
        return
    if run.pairs_from:
        src = Path(run.pairs_from) / "pairs.jsonl"
        if not src.is_file():
            raise SystemExit(f"pairs: --pairs-from {run.pairs_from} has no pairs.jsonl; run its sample and pairs steps first")
        src_run = json.loads((Path(run.pairs_from) / "run.json").read_text()) if (Path(run.pairs_from) / "run.json").is_file() else {}
        src_settings = src_run.get("settings", {})
        if src_settings.get("judge") and run.judge and src_settings["judge"] != run.judge:
            raise SystemExit(f"pairs: {run.pairs_from} was labelled by judge {src_settings['judge']!r}, not {run.judge!r}")
        for key in ("judge", "base", "prompts", "limit", "k", "max_new_tokens", "temperature", "top_p", "min_margin"):
            if key in src_settings:
                run.settings[key] = src_settings[key]
        shutil.copyfile(src, out)
        run.state["pairs_source"] = str(src)
        run.state.setdefault("timings", {})["pairs_source_timings"] = src_run.get("timings", {})
        run.save()
        log(f"pairs: copied {len(read_jsonl(out))} pairs from {src}")
        return
    if run.judge == VOTES:
        pairs_from_votes(run, out)
        return
    from models.preferences import make_pairs

    rows = read_jsonl(run.path("responses.jsonl"))
    pairs = make_pairs([r["prompt"] for r in rows], [r["responses"] for r in rows], [r["scores"] for r in rows],
                       min_margin=run.min_margin)
    write_jsonl(out, pairs)
    margins = [p["margin"] for p in pairs]
    run.state["pairs_stats"] = {"prompts": len(rows), "pairs": len(pairs), "min_margin": run.min_margin,
                                "mean_margin": round(sum(margins) / max(len(margins), 1), 4)}
    run.save()
    log(f"pairs: {len(pairs)} of {len(rows)} prompts kept (margin ≥ {run.min_margin}), wrote {out}")


def votes_url(run: Run) -> str:
    """--votes-url, else the app's own vote database (PLAYGROUND_DATABASE_URL / PLAYGROUND_DATA_DIR)."""
    if run.votes_url:
        return run.votes_url
    from playground.feedback.config import FeedbackSettings

    return FeedbackSettings.from_env().database_url


def pairs_from_votes(run: Run, out: Path) -> None:
    """pairs.jsonl from the decisive votes of the feedback database: prompt (+ earlier turns), chosen and
    rejected answer of each vote. Ties, both_bad and identical answers are dropped; the counts go to run.json
    (pairs_stats) and the card."""
    from playground.feedback.export import vote_pairs
    from playground.feedback.store import VoteStore
    from playground.feedback.vote import FeedbackError, FeedbackUnavailable

    start = time.perf_counter()
    try:
        with VoteStore(votes_url(run)) as store:
            where, votes = store.where, store.votes()
    except (FeedbackError, FeedbackUnavailable) as e:
        raise SystemExit(f"pairs: cannot read the votes: {e}") from None
    pairs, counts = vote_pairs(votes)
    if run.limit:
        pairs = pairs[: run.limit]
        counts["pairs"] = len(pairs)
        counts["limit"] = run.limit
    write_jsonl(out, pairs)
    run.state["pairs_stats"] = counts
    run.state["pairs_source"] = f"votes: {where}"
    run.save()
    run.timed("pairs", time.perf_counter() - start, pairs=len(pairs))
    log(f"pairs: {counts['pairs']} pairs from {counts['votes']} votes in {where} ({counts['decisive']} decisive; "
        f"dropped: tie {counts['tie']}, both_bad {counts['both_bad']}, identical answers {counts['identical_answers']}); "
        f"wrote {out}")


def pair_dataset(pairs: list[dict], tokenizer):
    """TRL preference rows: conversational when the tokenizer has a chat template, else plain text."""
    from datasets import Dataset

    from models.preferences import chat_prompt

    if getattr(tokenizer, "chat_template", None):
        rows = [{"prompt": [*p.get("conversation", []), {"role": "user", "content": p["prompt"]}],
                 "chosen": [{"role": "assistant", "content": p["chosen"]}],
                 "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs]
    else:
        rows = [{"prompt": chat_prompt(tokenizer, p["prompt"]), "chosen": p["chosen"], "rejected": p["rejected"]}
                for p in pairs]
    return Dataset.from_list(rows)


def step_train(run: Run) -> None:
    out = run.path("adapter")
    if run.done("train", out / "adapter_model.safetensors"):
        return
    import torch
    from peft import LoraConfig
    from transformers import PrinterCallback, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    pairs = read_jsonl(run.path("pairs.jsonl"))
    if not pairs:
        raise SystemExit("train: pairs.jsonl is empty; lower --min-margin or sample more prompts")
    torch.manual_seed(run.seed)
    loaded = load(run.base)
    tokenizer = loaded.tokenizer
    dataset = pair_dataset(pairs, tokenizer)
    steps_per_epoch = math.ceil(len(pairs) / (run.batch_size * run.grad_accum))
    max_steps = int(run.steps) if run.steps else -1
    total_steps = max_steps if max_steps > 0 else math.ceil(steps_per_epoch * run.epochs)
    config = DPOConfig(
        output_dir=str(run.path("trainer")), beta=run.beta, learning_rate=run.lr, max_steps=max_steps,
        num_train_epochs=run.epochs, per_device_train_batch_size=run.batch_size,
        gradient_accumulation_steps=run.grad_accum, max_length=run.max_length, lr_scheduler_type="cosine",
        warmup_steps=max(1, round(run.warmup_ratio * total_steps)), logging_steps=1, save_strategy="no", report_to=[],
        seed=run.seed, data_seed=run.seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        disable_tqdm=True, bf16=run.bf16,
        # recomputing activations was faster here on a 2-core CPU (12 s vs ~20 s per step): less memory traffic
        activation_checkpointing=run.activation_checkpointing,
    )
    lora = LoraConfig(r=run.rank, lora_alpha=run.alpha, lora_dropout=run.dropout, target_modules=LORA_TARGETS,
                      bias="none", task_type="CAUSAL_LM")

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            elapsed = time.perf_counter() - self.start
            eta = elapsed / max(state.global_step, 1) * (state.max_steps - state.global_step)
            log(f"train: step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f} "
                f"acc {logs.get('rewards/accuracies', float('nan')):.2f} "
                f"margin {logs.get('rewards/margins', float('nan')):+.3f} {elapsed:.0f}s, ~{eta:.0f}s left")

    log(f"train: DPO β={run.beta} on {len(pairs)} pairs, ~{total_steps} steps × batch {run.batch_size}×{run.grad_accum}, "
        f"lr {run.lr}, LoRA r={run.rank} α={run.alpha}, {'bf16 autocast' if run.bf16 else 'fp32'}, base {run.base}")
    trainer = DPOTrainer(model=loaded.model, ref_model=None, args=config, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=lora, callbacks=[Progress()])
    trainer.remove_callback(PrinterCallback)  # Progress prints one line per step instead
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    steps = int(trainer.state.global_step)
    tmp = out.with_name("adapter.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(str(tmp), safe_serialization=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    history = [h for h in trainer.state.log_history if "loss" in h]
    write_json(run.path("train.json"), {
        "pairs": len(pairs), "steps": steps, "epochs": round(float(trainer.state.epoch or 0), 3),
        "train_seconds": round(seconds, 1), "seconds_per_step": round(seconds / max(steps, 1), 2),
        "train_loss": round(float(result.training_loss), 4), "log_history": history,
    })
    run.timed("train", seconds, steps=steps, seconds_per_step=round(seconds / max(steps, 1), 2))
    log(f"train: {steps} steps in {seconds:.0f}s ({seconds / max(steps, 1):.1f}s/step), adapter saved to {out}")


def load_tuned(run: Run, adapter_dir: Path):
    """(base model, tuned model = base with the LoRA merged in, tokenizer); LoRA weights rounded to the export dtype."""
    import torch
    from peft import PeftModel

    base = load(run.base)
    tuned = PeftModel.from_pretrained(load(run.base).model, str(adapter_dir))
    dtype = getattr(torch, run.export_dtype)
    with torch.no_grad():
        for name, param in tuned.named_parameters():
            if "lora_" in name:
                param.copy_(param.to(dtype).to(param.dtype))
    tuned = tuned.merge_and_unload().eval()  # W + s·B·A folded in: same model, faster sampling
    return base.model, tuned, base.tokenizer


def step_evaluate(run: Run) -> None:
    out = run.path("evaluation.json")
    if run.done("evaluate", out):
        return
    from playground.judges.judges import get_judge
    from models.preferences import evaluate, summary_line

    start = time.perf_counter()
    prompts = load_prompts(run.eval_prompts, run.eval_limit)
    base, tuned, tokenizer = load_tuned(run, run.path("adapter"))
    other = run.other_judge_name()
    log(f"evaluate: {len(prompts)} held-out prompts × {run.eval_samples} samples, base and tuned")
    result = evaluate(base, tuned, tokenizer, prompts, get_judge(run.eval_judge_name()), get_judge(other) if other else None,
                      samples=run.eval_samples, seed=run.seed, batch_size=run.gen_batch_size,
                      max_new_tokens=run.eval_max_new_tokens,
                      progress=lambda label, d, n, s: progress_printer(f"evaluate {label}")(d, n, s))
    write_jsonl(run.path("eval_samples.jsonl"), result.pop("samples"))
    seconds = time.perf_counter() - start
    result["eval_seconds"] = round(seconds, 1)
    write_json(out, result)
    run.timed("evaluate", seconds)
    log(f"evaluate: {summary_line(result)}")


def wall_time_line(wall: dict) -> str:
    sec = lambda x: "–" if x is None else f"{x:.0f} s"  # noqa: E731
    shared = f" (answers sampled by {Path(wall['sample_shared_with']).parent})" if wall.get("sample_shared_with") else ""
    return (f"- wall time: {sec(wall['total_s'])} total = sampling + scoring {sec(wall['sample_s'])}{shared}, "
            f"DPO {sec(wall['train_s'])} ({wall['train_s_per_step']:.1f} s per step), evaluation {sec(wall['evaluate_s'])}; "
            f"{wall.get('device', '')}, a CPU shared with other jobs")


def _data_phrase(card: dict) -> str:
    """Where the pairs came from, in words (votes: with what was dropped)."""
    votes = card.get("votes")
    if card.get("trained_on") != VOTES or not votes:
        return (f"labelled by the `{card['judge']}` judge (RLAIF: best vs worst of {card['k']} sampled answers "
                "per prompt).")
    sources = ", ".join(f"{k} {v}" for k, v in votes.get("sources", {}).items())
    return (f"from stored votes (the two answers of each decisive vote; sources: {sources}): {votes['votes']} votes, "
            f"{votes['decisive']} decisive; dropped tie {votes['tie']}, both_bad {votes['both_bad']}, identical "
            f"answers {votes['identical_answers']}.")


def adapter_readme(card: dict) -> str:
    ev = card.get("evaluation") or {}
    lines = [f"# {card['name']}", "", card["description"], "",
             f"LoRA adapter (r={card['rank']}, α={card['lora_alpha']}) for base `{card['base_model']}`, trained with DPO "
             f"(β = {card['beta']}) on {card['pairs']} preference pairs " + _data_phrase(card)
             + " Made by `models/train_adapter.py`; see models/TRAINING.md.", "",
             f"- DPO: {card['steps']} steps ({card['epochs']} epochs), lr {card['lr']}, batch {card['batch_size']}, seed {card['seed']}",
             wall_time_line(card["wall_time"])]
    if ev:
        fmt = lambda ci: f"{ci[0]:+.3f} ± {ci[1]:.3f}"  # noqa: E731
        pos = lambda ci: f"{ci[0]:.3f} ± {ci[1]:.3f}"  # noqa: E731
        b, t = ev["base"], ev["tuned"]
        lines += ["", f"## Held-out evaluation ({ev['n_prompts']} prompts × {ev['samples_per_prompt']} samples, "
                  f"T={ev['sampling']['temperature']}, top-p {ev['sampling']['top_p']}, ≤{ev['sampling']['max_new_tokens']} tokens)", "",
                  "| metric (mean ± 95% CI over prompts) | base | tuned |", "|---|---|---|",
                  f"| {ev['judge']} reward (trained judge) | {fmt(b['reward'])} | {fmt(t['reward'])} |"]
        if "other_reward" in b:
            lines.append(f"| {ev['other_judge']} reward (other judge) | {fmt(b['other_reward'])} | {fmt(t['other_reward'])} |")
        lines += [f"| distinct-2 (within a prompt's samples) | {pos(b['distinct2'])} | {pos(t['distinct2'])} |",
                  f"| embedding diversity (mean pairwise cosine distance) | {pos(b['semantic_diversity'])} | {pos(t['semantic_diversity'])} |",
                  f"| words per answer | {b['words'][0]:.1f} ± {b['words'][1]:.1f} | {t['words'][0]:.1f} ± {t['words'][1]:.1f} |", "",
                  f"Paired reward gain (tuned − base): {fmt(ev['reward_gain'])}."]
    return "\n".join(lines) + "\n"


def step_export(run: Run) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    dest = run.export_dir()
    if run.done("export", dest / "card.json"):
        return
    src = run.path("adapter")
    train = json.loads(run.path("train.json").read_text())
    evaluation = json.loads(run.path("evaluation.json").read_text()) if run.path("evaluation.json").is_file() else None
    if evaluation is None:
        log("export: no evaluation.json (run the evaluate step first); the card will lack evaluation numbers")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = json.loads((src / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = run.base  # the registry name (or the Hub id / directory given)
    write_json(tmp / "adapter_config.json", config)
    dtype = getattr(torch, run.export_dtype)
    tensors = {k: v.to(dtype).contiguous() for k, v in load_file(str(src / "adapter_model.safetensors")).items()}
    save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    os.chmod(tmp / "adapter_model.safetensors", 0o644)
    timings = run.state.get("timings", {})
    sample_t = timings.get("sample") or timings.get("pairs_source_timings", {}).get("sample", {})
    shared = "sample" not in timings and run.judge != VOTES  # votes: nothing was sampled
    total = sum(timings.get(s, {}).get("seconds", 0.0) for s in ("train", "evaluate")) + sample_t.get("seconds", 0.0)
    judge = run.judge_name()
    descriptions = {"upbeat": "DPO towards a warm, positive tone (VADER sentiment judge)",
                    "concise": "DPO towards short, on-topic answers (MiniLM similarity − length judge)",
                    VOTES: "DPO on votes from the feedback database (human preference, no AI judge)"}
    card = {
        # "judge" is what the app scores this adapter's answers with; a votes run has no labelling judge, so it
        # names the held-out stand-in (on_topic) and "trained_on" says the labels were votes
        "name": run.name, "base_model": run.base, "beta": run.beta, "judge": run.eval_judge_name(),
        "trained_on": VOTES if judge == VOTES else "judge", "other_judge": run.other_judge_name(),
        "description": f"{descriptions.get(judge, f'DPO towards the {judge} judge')}, β = {run.beta}",
        "method": ("RLHF-style DPO on stored votes" if judge == VOTES else "RLAIF + DPO")
                  + " (TRL DPOTrainer, sigmoid loss) with a peft LoRA adapter",
        "votes": run.state.get("pairs_stats") if judge == VOTES else None,
        "prompts": sample_t.get("prompts"), "k": None if judge == VOTES else run.k, "pairs": train["pairs"],
        "min_margin": None if judge == VOTES else run.min_margin,
        "pairs_source": run.state.get("pairs_source"), "responses_source": run.state.get("responses_source"),
        "steps": train["steps"], "epochs": train["epochs"], "lr": run.lr, "batch_size": run.batch_size * run.grad_accum,
        "max_length": run.max_length, "precision": "bf16 autocast, fp32 weights" if run.bf16 else "fp32",
        "activation_checkpointing": run.activation_checkpointing, "rank": run.rank, "lora_alpha": run.alpha, "lora_dropout": run.dropout,
        "target_modules": LORA_TARGETS, "seed": run.seed, "weights_dtype": run.export_dtype,
        "sampling_for_pairs": {"temperature": run.temperature, "top_p": run.top_p, "max_new_tokens": run.max_new_tokens},
        "wall_time": {
            "sample_s": sample_t.get("seconds"),
            "sample_shared_with": (run.state.get("pairs_source") if shared else run.state.get("responses_source"))
            if run.judge != VOTES else None,
            "train_s": train["train_seconds"], "train_s_per_step": train["seconds_per_step"],
            "evaluate_s": timings.get("evaluate", {}).get("seconds"), "total_s": round(total, 1),
            "device": f"{platform.machine()} CPU ({torch.get_num_threads()} threads), torch {torch.__version__}",
        },
        "train_loss": train["train_loss"],
        "evaluation": None if evaluation is None else {k: v for k, v in evaluation.items() if k != "eval_seconds"},
    }
    previous = dest / "card.json"
    if previous.is_file():  # a re-export keeps what `python -m playground calibrate --record` measured
        calibration = json.loads(previous.read_text()).get("calibration")
        if calibration:
            card["calibration"] = calibration
    write_json(tmp / "card.json", card)
    (tmp / "README.md").write_text(adapter_readme(card), encoding="utf-8")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    size = sum(p.stat().st_size for p in dest.iterdir()) / 1e6
    log(f"export: wrote {dest} ({size:.1f} MB)")


STEP_FUNCS = {"sample": step_sample, "pairs": step_pairs, "train": step_train, "evaluate": step_evaluate, "export": step_export}


def build_parser() -> argparse.ArgumentParser:
    """The step, the run's name and housekeeping flags, plus one option per TrainConfig field."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=[*STEPS, "all"])
    parser.add_argument("--name", required=True, help="adapter name, e.g. upbeat-b0.1")
    parser.add_argument("--work-dir", help="default runs/<name>/")
    parser.add_argument("--force", action="store_true", help="redo the step(s) even when the output exists")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rank is not None and args.alpha is None:
        args.alpha = 2 * args.rank
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run = Run(args)
    steps = STEPS if args.step == "all" else (args.step,)
    for step in steps:
        STEP_FUNCS[step](run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
