"""Simulated voters: a known preference plus label noise, to test the analysis end to end.

Each voter decides "a", "b" or "tie" from its preference; then with probability ε (the noise rate) a
decisive answer is flipped (a ↔ b). For a pair where the preference is decisive, the voter therefore picks
the preferred answer with probability 1 − ε: the analysis must recover the preference through that noise.
Ties are never flipped. All randomness comes from the `rng` argument, so a seed reproduces every vote.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

EmbedFn = Callable[[list[str]], np.ndarray]  # texts → (n, d) embeddings, e.g. playground.judges Embedder.encode


class Voter(Protocol):
    def vote(self, prompt: str, answer_a: str, answer_b: str, settings_a: Mapping[str, Any],
             settings_b: Mapping[str, Any], rng: np.random.Generator) -> str: ...


class NoisyVoter:
    """Base class: `prefer` returns the noise-free outcome; `vote` adds the ε flips."""

    def __init__(self, noise: float = 0.0) -> None:
        if not 0.0 <= noise <= 0.5:
            raise ValueError(f"noise: a flip rate in [0, 0.5] (0.5 = coin toss); got {noise}")
        self.noise = noise

    def prefer(self, prompt: str, answer_a: str, answer_b: str, settings_a: Mapping[str, Any],
               settings_b: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def vote(self, prompt: str, answer_a: str, answer_b: str, settings_a: Mapping[str, Any],
             settings_b: Mapping[str, Any], rng: np.random.Generator) -> str:
        outcome = self.prefer(prompt, answer_a, answer_b, settings_a, settings_b)
        if outcome in ("a", "b") and rng.random() < self.noise:
            return "b" if outcome == "a" else "a"
        return outcome


def _by_score(score_a: float, score_b: float) -> str:
    """The answer with the higher score; "tie" when equal."""
    return "a" if score_a > score_b else "b" if score_b > score_a else "tie"


class ShorterVoter(NoisyVoter):
    """Prefers the shorter answer (in characters)."""

    def prefer(self, prompt, answer_a, answer_b, settings_a, settings_b) -> str:  # type: ignore[override]
        return _by_score(-len(answer_a), -len(answer_b))


class CloserInMeaningVoter(NoisyVoter):
    """Prefers the answer whose embedding is closer to the prompt's: higher cosine similarity
    cos(e_prompt, e_answer) = e_p · e_x / (‖e_p‖ ‖e_x‖). `embed_fn` maps a list of texts to embeddings."""

    def __init__(self, embed_fn: EmbedFn, noise: float = 0.0) -> None:
        super().__init__(noise)
        self.embed_fn = embed_fn

    def prefer(self, prompt, answer_a, answer_b, settings_a, settings_b) -> str:  # type: ignore[override]
        e = np.asarray(self.embed_fn([prompt, answer_a, answer_b]), dtype=np.float64)
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return _by_score(float(e[0] @ e[1]), float(e[0] @ e[2]))


class SettingVoter(NoisyVoter):
    """Prefers the answer decoded nearer its favourite setting: distance |λ − best_lambda| (plus
    |T − best_temperature| when that is given); the nearer answer wins, equal distances tie."""

    def __init__(self, best_lambda: float, noise: float = 0.0, best_temperature: float | None = None) -> None:
        super().__init__(noise)
        self.best_lambda = best_lambda
        self.best_temperature = best_temperature

    def distance(self, settings: Mapping[str, Any]) -> float:
        d = abs(float(settings["lambda"]) - self.best_lambda)
        if self.best_temperature is not None:
            d += abs(float(settings["temperature"]) - self.best_temperature)
        return d

    def prefer(self, prompt, answer_a, answer_b, settings_a, settings_b) -> str:  # type: ignore[override]
        return _by_score(-self.distance(settings_a), -self.distance(settings_b))


def simulate_outcomes(voter: Voter, pairs: Sequence[tuple[str, str, str, Mapping[str, Any], Mapping[str, Any]]],
                      seed: int = 0) -> list[str]:
    """The voter's outcomes for (prompt, answer_a, answer_b, settings_a, settings_b) pairs, seeded."""
    rng = np.random.default_rng(seed)
    return [voter.vote(p, a, b, sa, sb, rng) for p, a, b, sa, sb in pairs]
