"""Fakes for the probe tests: a bag-of-words embedder, simple judges, and a generate that counts its calls."""
from __future__ import annotations

import re
import zlib
from collections.abc import Callable

import numpy as np

from playground.probes.base import Generated, ProbeContext, ProbeRow

DIM = 8192


def bow_embed(texts: list[str]) -> np.ndarray:
    """Unit-norm bag of content words (≥ 4 letters), hashed into DIM buckets: shared words → similar."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z]{4,}", t.lower()):
            out[i, zlib.crc32(w.encode()) % DIM] += 1.0
        n = np.linalg.norm(out[i])
        if n:
            out[i] /= n
    return out


class KeywordJudge:
    """score = 1 when the answer contains `word`, else 0."""

    def __init__(self, word: str) -> None:
        self.word = word

    def score(self, prompts, responses) -> np.ndarray:
        assert len(prompts) == len(responses)
        return np.array([float(self.word in r.lower()) for r in responses])


class WordCountJudge:
    def score(self, prompts, responses) -> np.ndarray:
        return np.array([float(len(r.split())) for r in responses])


class HedgeAverseJudge:
    """−1 for "not sure", else 0: prefers the confident answer to its hedged twin, ties with the decline."""

    def score(self, prompts, responses) -> np.ndarray:
        return np.array([-1.0 if "not sure" in r.lower() else 0.0 for r in responses])


def context(**kw) -> ProbeContext:
    judges = {"wonderful": KeywordJudge("wonderful"), "words": WordCountJudge(), "hedge": HedgeAverseJudge()}
    kw.setdefault("embed", bow_embed)
    kw.setdefault("judge", lambda name: judges[name])
    kw.setdefault("judges", ("wonderful",))
    return ProbeContext(n_boot=200, **kw)


class FakeGenerate:
    """generate(rows) → Generated per row from `answer(row)`; records each call's rows."""

    def __init__(self, answer: Callable[[ProbeRow], str]) -> None:
        self.answer = answer
        self.calls: list[list[ProbeRow]] = []

    def __call__(self, rows: list[ProbeRow]) -> list[Generated]:
        self.calls.append(list(rows))
        return [Generated(r, self.answer(r), tokens=len(self.answer(r).split()), kl_to_base=0.1 * r.lam) for r in rows]
