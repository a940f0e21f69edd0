"""The RLAIF → DPO → LoRA pipeline (models/train_adapter.py), preference pairs and the prompt split."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.prompts import make_prompts
from models.preferences import chat_prompt, make_pairs

CARD_KEYS = {"name", "base_model", "beta", "judge", "other_judge", "pairs", "steps", "epochs", "lr", "rank", "seed",
             "wall_time", "evaluation"}


# ------------------------------------------------------------------------------------------------ make_pairs
def test_make_pairs_takes_best_and_worst() -> None:
    pairs = make_pairs(["p1", "p2"], [["a", "b", "c"], ["x", "y", "z"]], [[0.1, 0.9, -0.5], [0.0, 0.3, 0.2]])
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [("p1", "b", "c"), ("p2", "y", "x")]
    assert pairs[0]["margin"] == pytest.approx(1.4) and pairs[1]["margin"] == pytest.approx(0.3)


def test_make_pairs_drops_near_ties_and_degenerate_pairs() -> None:
    prompts = ["tie", "near", "clear", "same-text", "empty-best", "single"]
    responses = [["a", "b"], ["a", "b"], ["a", "b"], ["s", "s"], ["", "b"], ["only"]]
    scores = [[0.5, 0.5], [0.50, 0.55], [0.0, 0.8], [0.0, 1.0], [1.0, 0.0], [1.0]]
    pairs = make_pairs(prompts, responses, scores, min_margin=0.1)
    assert [p["prompt"] for p in pairs] == ["clear"]
    # without a margin filter only exact ties (and the degenerate cases) go
    assert [p["prompt"] for p in make_pairs(prompts, responses, scores)] == ["near", "clear"]
    with pytest.raises(ValueError):
        make_pairs(["p"], [["a", "b"]], [[1.0]])


# ------------------------------------------------------------------------------------------------ prompt split
def test_prompt_files_are_generated_disjoint_and_large_enough() -> None:
    train, evals = make_prompts.load_prompts("train"), make_prompts.load_prompts("eval")
    assert (train, evals) == make_prompts.build_splits(), "prompt files are stale: run models/prompts/make_prompts.py"
    assert len(train) >= 400 and len(evals) >= 60
    assert len(set(train)) == len(train) and len(set(evals)) == len(evals)
    assert not set(train) & set(evals)
    eval_templates = make_prompts.TEMPLATES[-make_prompts.N_EVAL_TEMPLATES:]
    train_templates = make_prompts.TEMPLATES[:-make_prompts.N_EVAL_TEMPLATES]
    train_subjects, eval_subjects = make_prompts.split_subjects()
    held = set(eval_subjects.values())
    # no eval prompt shares its phrasing or its activity with a train prompt
    for prompt in train:
        assert not any(s in prompt for s in held), prompt
    for prompt in evals:
        assert not any(t.format(s=s) == prompt for t in train_templates for ss in train_subjects.values() for s in ss)
        assert any(t.format(s=s) == prompt for t in eval_templates for s in held), prompt
    topics_seen = {topic for topic, ss in train_subjects.items() if any(s in p for p in train for s in ss)}
    assert len(topics_seen) >= 20


# ------------------------------------------------------------------------------------------------ whole pipeline
@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer random llama (hidden 32) with the real SmolLM2 tokenizer, saved as safetensors."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from playground.registry import get_base
    from playground.lm.loading import resolve_source

    out = tmp_path_factory.mktemp("tiny_llama_pipeline")
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(get_base("smollm2-135m-instruct").source))
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=len(tokenizer), max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def test_chat_prompt_ends_with_assistant_header(tiny_base: Path) -> None:
    from transformers import AutoTokenizer

    text = chat_prompt(AutoTokenizer.from_pretrained(tiny_base), "Hi there")
    assert "Hi there" in text and text.rstrip().endswith("assistant")


def test_pipeline_end_to_end(tiny_base: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from models.train_adapter import main

    work, out = tmp_path / "run", tmp_path / "adapters" / "tiny-concise"
    common = ["--name", "tiny-concise", "--work-dir", str(work)]
    assert main(["sample", *common, "--judge", "concise", "--base", str(tiny_base), "--limit", "6", "--k", "3",
                 "--max-new-tokens", "12", "--min-margin", "0"]) == 0
    rows = [json.loads(line) for line in (work / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(len(r["responses"]) == 3 == len(r["scores"]) for r in rows)
    assert main(["pairs", *common]) == 0
    pairs = [json.loads(line) for line in (work / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) >= 2 and all({"prompt", "chosen", "rejected", "margin"} <= set(p) for p in pairs)
    assert main(["train", *common, "--beta", "0.2", "--steps", "2", "--batch-size", "2", "--rank", "4"]) == 0
    assert (work / "adapter" / "adapter_model.safetensors").is_file()
    assert main(["evaluate", *common, "--eval-limit", "3", "--eval-samples", "2",
                 "--eval-max-new-tokens", "12"]) == 0
    assert main(["export", *common, "--out", str(out)]) == 0
    # resumable: a second run skips every step (the files stay as they are)
    mtime = (out / "card.json").stat().st_mtime_ns
    assert main(["all", *common]) == 0
    assert (out / "card.json").stat().st_mtime_ns == mtime

    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "card.json", "README.md"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)
    card = json.loads((out / "card.json").read_text())
    assert CARD_KEYS <= set(card)
    assert card["beta"] == 0.2 and card["judge"] == "concise" and card["other_judge"] == "upbeat"
    assert card["steps"] == 2 and card["rank"] == 4 and card["pairs"] == len(pairs)
    assert {"train_s", "train_s_per_step", "total_s"} <= set(card["wall_time"])
    ev = card["evaluation"]
    assert ev["n_prompts"] == 3 and ev["samples_per_prompt"] == 2
    for side in ("base", "tuned"):
        assert {"reward", "other_reward", "distinct2", "semantic_diversity"} <= set(ev[side])
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_base) and config["r"] == 4

    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    tuned = PeftModel.from_pretrained(base, str(out))
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in tuned.named_parameters())
