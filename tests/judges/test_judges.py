"""Judges: behaviour of the built-ins, the registry, and reward models loaded from a local directory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from playground.judges.embeddings import default_embedder_path
from playground.judges.judges import (
    JUDGES, ConciseJudge, Judge, RewardModelJudge, UpbeatJudge, available_judges, get_judge,
)


def test_upbeat_ranks_positive_above_negative() -> None:
    scores = UpbeatJudge().score(["How was it?"] * 3, ["I love this, it's wonderful!", "It is a chair.", "This is terrible."])
    assert scores.dtype == np.float64 and scores.shape == (3,)
    assert scores[0] > scores[1] > scores[2]
    assert -1.0 <= scores.min() and scores.max() <= 1.0


def test_concise_prefers_short_on_topic_answer() -> None:
    prompt = "What is the capital of France?"
    short = "The capital of France is Paris."
    rambling = ("Well, let me tell you about my grandmother's garden, where tomatoes and beans grew every summer "
                "and the neighbours' cats used to sleep under the old apple tree all afternoon. ") * 4
    scores = ConciseJudge().score([prompt] * 3, [short, rambling, ""])
    assert scores[0] > scores[1]
    assert scores[2] == ConciseJudge.minimum == -1.5
    assert scores.dtype == np.float64


def test_concise_formula() -> None:
    judge = ConciseJudge()
    prompt, answer = "Tell me about dogs.", "Dogs are loyal animals."
    emb = judge._embedder.encode([prompt, answer]).astype(np.float64)
    expected = float(emb[0] @ emb[1]) - 0.5 * min(4 / 100, 1.0)
    assert judge.score([prompt], [answer])[0] == pytest.approx(expected, abs=1e-6)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="pair up"):
        UpbeatJudge().score(["a", "b"], ["x"])


def test_registry() -> None:
    assert available_judges() == ["upbeat", "concise", "on_topic"] == list(JUDGES)
    judge = get_judge("upbeat")
    assert judge is get_judge("upbeat")
    assert isinstance(judge, Judge) and judge.name == "upbeat"
    for name in available_judges():
        assert get_judge(name).description.startswith(f"{name}: ")


def test_unknown_judge_lists_available() -> None:
    with pytest.raises(KeyError, match="upbeat, concise"):
        get_judge("grumpy")
    with pytest.raises(ValueError, match="hf:"):
        get_judge("grumpy")


def _tiny_reward_model(path: Path, num_labels: int = 1) -> Path:
    """A random 2-layer BERT reward model saved as safetensors, with the MiniLM tokenizer."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=num_labels)
    BertForSequenceClassification(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(default_embedder_path()).save_pretrained(path)
    return path


def test_reward_model_single_logit(tmp_path: Path) -> None:
    path = _tiny_reward_model(tmp_path / "rm1")
    judge = get_judge(f"hf:{path}")
    assert isinstance(judge, RewardModelJudge) and judge.name == f"hf:{path}"
    prompts, responses = ["Hi there", "What is 2+2?", "Tell me a joke"], ["Hello!", "4", "No."]
    scores = judge.score(prompts, responses)
    assert scores.dtype == np.float64 and scores.shape == (3,)
    assert judge.format("Hi", "Hello!") == "Hi\n\nHello!"  # no chat template
    model = BertForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        for i, (p, r) in enumerate(zip(prompts, responses)):  # unpadded, one at a time
            logit = model(**tok(f"{p}\n\n{r}", return_tensors="pt")).logits[0, 0].item()
            assert scores[i] == pytest.approx(logit, abs=1e-4)


def test_reward_model_two_labels_and_chat_template(tmp_path: Path) -> None:
    path = _tiny_reward_model(tmp_path / "rm2", num_labels=2)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    tok.save_pretrained(path)
    judge = RewardModelJudge(str(path))
    text = judge.format("Hi", "Hello!")
    assert text == "<user>Hi\n<assistant>Hello!\n"
    model = BertForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        logits = model(**tok(text, return_tensors="pt")).logits[0]
    assert judge.score(["Hi"], ["Hello!"])[0] == pytest.approx((logits[1] - logits[0]).item(), abs=1e-4)


def test_reward_model_refuses_pickle_only_dir(tmp_path: Path) -> None:
    path = _tiny_reward_model(tmp_path / "rm_pickle")
    model = BertForSequenceClassification.from_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    (path / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"only pickle weights \(pytorch_model\.bin\)"):
        RewardModelJudge(str(path))


def test_reward_model_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected config.json"):
        RewardModelJudge(str(tmp_path / "absent"))
