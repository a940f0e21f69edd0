"""Judges (reward functions) shared by DPO training, the app and the metrics.

Every judge scores (prompt, response) pairs; higher = more preferred:

    judge = get_judge("upbeat")                     # or "concise", or "hf:<Hub id or local dir>"
    rewards = judge.score(prompts, responses)      # float64 array [len(prompts)]
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from playground.lm.loading import check_safetensors_dir
from playground.runtime.model_sources import is_local
from playground.runtime.threads import releases_pool

if TYPE_CHECKING:
    import torch

HF_PREFIX = "hf:"


@runtime_checkable
class Judge(Protocol):
    """A reward function over (prompt, response) pairs."""

    name: str  # the key `get_judge` accepts
    description: str  # one line for newcomers: what it rewards and the score's range

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """float64 array [n] of rewards, higher = more preferred."""
        ...


class UnknownJudgeError(KeyError, ValueError):
    """An unknown judge name; catch it as KeyError or ValueError. The message lists the available judges."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _check_pairs(prompts: Sequence[str], responses: Sequence[str]) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses; they must pair up")


class UpbeatJudge:
    """VADER compound sentiment of the response, in [−1, 1]; the prompt is ignored."""

    name = "upbeat"
    description = "upbeat: warm, positive tone (VADER sentiment of the answer, −1..1)"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        _check_pairs(prompts, responses)
        return np.array([self._analyzer.polarity_scores(r)["compound"] for r in responses], dtype=np.float64)


class ConciseJudge:
    """Short, on-topic answers:

        score = cos(e(prompt), e(response)) − 0.5 · min(words / 100, 1)

    e = all-MiniLM-L6-v2 sentence embedding, words = whitespace-separated words of the response.
    Range [−1.5, 1]; an empty (or whitespace-only) response gets the minimum, −1.5.
    """

    name = "concise"
    description = "concise: short, on-topic answers (similarity to the prompt − 0.5·min(words/100, 1), −1.5..1)"
    length_weight = 0.5
    length_scale = 100.0
    minimum = -1.0 - length_weight

    def __init__(self, embedder_path: str | None = None) -> None:
        from playground.judges.embeddings import get_embedder

        self._embedder = get_embedder(embedder_path)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        _check_pairs(prompts, responses)
        out = np.full(len(responses), self.minimum, dtype=np.float64)
        keep = [i for i, r in enumerate(responses) if r.strip()]
        if not keep:
            return out
        p = self._embedder.encode([prompts[i] for i in keep]).astype(np.float64)
        r = self._embedder.encode([responses[i] for i in keep]).astype(np.float64)
        sim = np.sum(p * r, axis=1)  # unit-norm embeddings: dot = cosine
        n_words = np.array([len(responses[i].split()) for i in keep], dtype=np.float64)
        out[keep] = sim - self.length_weight * np.minimum(n_words / self.length_scale, 1.0)
        return out


class OnTopicJudge:
    """Does the answer address the question? score = cos(e(prompt), e(response)), no length term.

    The held-out judge of the over-optimisation view: an adapter that games tone or length while it stops
    answering shows a falling on-topic score. e = all-MiniLM-L6-v2; an empty response scores −1.
    """

    name = "on_topic"
    description = "on_topic: does the answer address the prompt (MiniLM cosine similarity, −1..1; no length term)"

    def __init__(self, embedder_path: str | None = None) -> None:
        from playground.judges.embeddings import get_embedder

        self._embedder = get_embedder(embedder_path)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        _check_pairs(prompts, responses)
        out = np.full(len(responses), -1.0, dtype=np.float64)
        keep = [i for i, r in enumerate(responses) if r.strip()]
        if keep:
            p = self._embedder.encode([prompts[i] for i in keep]).astype(np.float64)
            r = self._embedder.encode([responses[i] for i in keep]).astype(np.float64)
            out[keep] = np.sum(p * r, axis=1)  # unit-norm embeddings: dot = cosine
        return out


def check_local_weights(path: Path) -> None:
    """Refuse a local reward-model directory without config.json or *.safetensors (pickle can run code)."""
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a model directory: expected config.json and *.safetensors weights")
    check_safetensors_dir(path, "reward model")


def _is_local(source: str) -> bool:
    return is_local(source)


class RewardModelJudge:
    """A Hugging Face sequence-classification reward model (Hub id or local directory, safetensors only).

    Input: the tokenizer's chat template over [user: prompt, assistant: response] when it has one,
    else "prompt\\n\\nresponse". Reward = the logit when num_labels == 1, logit[1] − logit[0] when 2.
    """

    def __init__(self, source: str, device: str | None = None, batch_size: int = 8, max_length: int = 2048) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        where = str(Path(source).expanduser()) if _is_local(source) else source
        if _is_local(source):
            check_local_weights(Path(where))
        self.source, self.batch_size = source, batch_size
        self.name = f"{HF_PREFIX}{source}"
        self.description = f"{self.name}: reward model {source} (its preference logit; higher = preferred)"
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            where, use_safetensors=True, trust_remote_code=False
        )
        self.model.to(self.device).eval().requires_grad_(False)
        if self.model.config.num_labels not in (1, 2):
            raise ValueError(f"{source}: expected a reward head with 1 or 2 labels, got {self.model.config.num_labels}")
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        limits = [max_length, self.tokenizer.model_max_length, getattr(self.model.config, "max_position_embeddings", None)]
        self.max_length = min(int(x) for x in limits if x)

    def format(self, prompt: str, response: str) -> str:
        """The text the reward model reads for one pair."""
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return f"{prompt}\n\n{response}"

    def _rewards(self, texts: list[str]) -> torch.Tensor:
        bos = self.tokenizer.bos_token
        add_special = not (bos and all(t.startswith(bos) for t in texts))  # the template already has BOS
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length,
            add_special_tokens=add_special, return_tensors="pt",
        ).to(self.device)
        logits = self.model(**batch).logits.double()
        return logits[:, 0] if logits.shape[-1] == 1 else logits[:, 1] - logits[:, 0]

    @releases_pool  # torch in a handler thread: its OpenMP pool must not stay behind (playground/runtime/threads.py)
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        import torch  # imported with the reward model, not with this module

        _check_pairs(prompts, responses)
        texts = [self.format(p, r) for p, r in zip(prompts, responses)]
        # without a pad token, score one pair at a time (no padding needed, nothing to misread as padding)
        size = self.batch_size if self.tokenizer.pad_token_id is not None else 1
        out = np.empty(len(texts), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(texts), size):
                out[start:start + size] = self._rewards(texts[start:start + size]).cpu().numpy()
        return out


JUDGES: dict[str, Callable[[], Judge]] = {
    UpbeatJudge.name: UpbeatJudge,
    ConciseJudge.name: ConciseJudge,
    OnTopicJudge.name: OnTopicJudge,
}


def available_judges() -> list[str]:
    """Names of the built-in judges; any "hf:<Hub id or local dir>" is accepted as well."""
    return list(JUDGES)


@functools.lru_cache(maxsize=8)
def get_judge(name: str) -> Judge:
    """The judge called `name` (built once per process): a built-in name or "hf:<Hub id or local dir>"."""
    if name.startswith(HF_PREFIX) and name[len(HF_PREFIX):].strip():
        return RewardModelJudge(name[len(HF_PREFIX):].strip())
    if name not in JUDGES:
        raise UnknownJudgeError(
            f"unknown judge {name!r}; available: {', '.join(available_judges())}, "
            f"or {HF_PREFIX}<Hub id or local dir> for a sequence-classification reward model"
        )
    return JUDGES[name]()
