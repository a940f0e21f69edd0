"""Metrics for the alignment-vs-diversity trade-off: divergences, lexical and semantic diversity, statistics.

Token-level (torch, per position): `kl_from_logits`, `entropy_from_logits`.
Set-level diversity of several samples for one prompt: `distinct_n`, `ead`, `self_bleu` (lower = more
diverse), `semantic_diversity`. Summaries: `mean_ci95`, `pareto_front`.
Text is tokenised with `words`: lowercase, then the regex `\\w+|[^\\w\\s]` (words and single punctuation marks).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from playground.judges.embeddings import Embedder

_WORD_RE = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lowercased word and punctuation tokens: re.findall(r"\\w+|[^\\w\\s]", text.lower())."""
    return _WORD_RE.findall(text.lower())


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log_softmax over the last axis in float32 at least (float64 stays float64)."""
    import torch  # on first use: the UI imports this module before torch is loaded

    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return torch.log_softmax(logits.to(dtype), dim=-1)


def kl_from_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) per position, in nats: Σ_v p(v)·(log p(v) − log q(v)), p = softmax(p_logits), q = softmax(q_logits).

    Inputs are [..., V] (broadcastable); the result is [...]. Terms with p(v) = 0 contribute 0.
    """
    log_p, log_q = _log_probs(p_logits), _log_probs(q_logits)
    p = log_p.exp()
    return (p * (log_p - log_q)).masked_fill(~(p > 0), 0.0).sum(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy per position, in nats: H = −Σ_v p(v)·log p(v), p = softmax(logits); [..., V] → [...]."""
    log_p = _log_probs(logits)
    p = log_p.exp()
    return -(p * log_p).masked_fill(~(p > 0), 0.0).sum(-1)


def _as_tokens(seq: Sequence[Hashable] | str) -> Sequence[Hashable]:
    """A str is tokenised with `words`; any other sequence (token ids, words) is used as is."""
    return words(seq) if isinstance(seq, str) else seq


def _ngrams(seq: Sequence[Hashable], n: int) -> list[tuple[Hashable, ...]]:
    tokens = list(seq)
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _pooled_ngram_counts(seqs: Sequence[Sequence[Hashable] | str], n: int) -> tuple[int, int]:
    """(unique n-grams, total n-grams) pooled over all samples; n-grams never cross sample boundaries."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    counts: Counter[tuple[Hashable, ...]] = Counter()
    for seq in seqs:
        counts.update(_ngrams(_as_tokens(seq), n))
    return len(counts), sum(counts.values())


def distinct_n(seqs: Sequence[Sequence[Hashable] | str], n: int) -> float:
    """Distinct-n (Li et al. 2016): |unique n-grams| / |n-grams|, pooled over all samples; 0.0 when there are none.

    Samples are token sequences (e.g. token ids); a str sample is tokenised with `words`.
    Example: distinct_n([["a", "b", "a", "b"]], 2) = |{ab, ba}| / 3 = 2/3.
    """
    unique, total = _pooled_ngram_counts(seqs, n)
    return unique / total if total else 0.0


def ead(seqs: Sequence[Sequence[Hashable] | str], n: int, vocab_size: int) -> float:
    """Expectation-Adjusted Distinct (Liu et al. 2022, "Rethinking and Refining the Distinct Metric").

        EAD = N / (V · (1 − ((V − 1)/V)^C))

    N = unique n-grams, C = total n-grams (pooled as in `distinct_n`), V = `vocab_size` used as given for
    every n, as in the paper (its formula is stated for tokens; V is the vocabulary size, e.g. the
    tokenizer's, shared by all compared systems). The denominator is the expected number of distinct
    items in C uniform draws from V, so EAD ≈ 1 for uniform random text at any length; unlike distinct-n
    it does not fall just because samples are longer. Passing V**n instead makes EAD ≈ distinct-n when
    C ≪ V**n. Returns 0.0 when there are no n-grams.
    """
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    unique, total = _pooled_ngram_counts(seqs, n)
    if total == 0:
        return 0.0
    # V·(1 − (1 − 1/V)^C) computed as −V·expm1(C·log1p(−1/V)), exact for huge V too
    expected = -vocab_size * math.expm1(total * math.log1p(-1.0 / vocab_size)) if vocab_size > 1 else 1.0
    return unique / expected


def _clipped_precision(hyp: list[str], refs: list[list[str]], n: int) -> tuple[int, int]:
    """(Σ_g min(count_hyp(g), max_r count_r(g)), |hyp n-grams|) — BLEU's clipped n-gram matches."""
    hyp_counts = Counter(_ngrams(hyp, n))
    max_ref: Counter[tuple[Hashable, ...]] = Counter()
    for ref in refs:
        max_ref |= Counter(_ngrams(ref, n))
    matches = sum(min(c, max_ref[g]) for g, c in hyp_counts.items())
    return matches, sum(hyp_counts.values())


def sentence_bleu(hyp: list[str], refs: list[list[str]], max_n: int = 4) -> float:
    """Sentence BLEU of token list `hyp` against token lists `refs`, uniform weights 1/max_n.

        BLEU = BP · exp((1/N) Σ_{n=1..N} log p_n)
        p_1 = m_1 / t_1;  p_n = (m_n + 1) / (t_n + 1) for n > 1   (add-one smoothing, Lin & Och 2004)
        BP  = 1 if c > r else exp(1 − r/c)

    m_n = clipped n-gram matches, t_n = hypothesis n-grams, c = |hyp|, r = the reference length closest
    to c (the shorter one on ties). An empty hypothesis or m_1 = 0 gives 0.
    """
    if not hyp or not refs:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        matches, total = _clipped_precision(hyp, refs, n)
        if n == 1 and matches == 0:
            return 0.0
        log_sum += math.log(matches / total if n == 1 else (matches + 1) / (total + 1))
    c = len(hyp)
    r = min((abs(len(ref) - c), len(ref)) for ref in refs)[1]
    bp = 1.0 if c > r else math.exp(1.0 - r / c)
    return bp * math.exp(log_sum / max_n)


def self_bleu(texts: Sequence[str], max_n: int = 4) -> float:
    """Self-BLEU (Zhu et al. 2018): mean over i of sentence_bleu(text_i, all other texts); 0.0 for < 2 texts.

    Higher = the samples repeat each other's n-grams = less diverse; identical texts give 1.0.
    """
    if len(texts) < 2:
        return 0.0
    tokens = [words(t) for t in texts]
    scores = [sentence_bleu(tok, tokens[:i] + tokens[i + 1:], max_n) for i, tok in enumerate(tokens)]
    return float(np.mean(scores))


def semantic_diversity(texts: Sequence[str], embedder: Embedder | None = None) -> float:
    """Mean pairwise cosine distance: (2 / (k(k−1))) Σ_{i<j} (1 − cos(e_i, e_j)); 0.0 for fewer than 2 texts.

    e_i are the unit-norm sentence embeddings of `embedder` (default: the bundled all-MiniLM-L6-v2).
    """
    if len(texts) < 2:
        return 0.0
    if embedder is None:
        from playground.judges.embeddings import get_embedder

        embedder = get_embedder()
    emb = embedder.encode(list(texts)).astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(min=1e-12)
    i, j = np.triu_indices(len(texts), k=1)
    return float(np.mean(1.0 - np.sum(emb[i] * emb[j], axis=1)))


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% Student-t interval): x̄ and t_{0.975, n−1} · s / √n, s with ddof = 1.

    The half-width is 0.0 for n < 2; the mean of no values is nan.
    """
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), 0.0
    mean = float(x.mean())
    if x.size < 2:
        return mean, 0.0
    half = stats.t.ppf(0.975, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return mean, float(half)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices (ascending) of points no other point dominates, maximising both coordinates.

    q dominates p when q ≥ p in both coordinates and q > p in at least one. Duplicates are all kept;
    points with a nan or infinite coordinate are left out.
    """
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(arr).all(axis=1)
    front = []
    for i in np.flatnonzero(finite):
        others = arr[finite]
        dominated = np.any(np.all(others >= arr[i], axis=1) & np.any(others > arr[i], axis=1))
        if not dominated:
            front.append(int(i))
    return front


# Stock phrases of an answer that flatters instead of answering (seen in the upbeat adapter's extrapolated
# answers: "I'm thrilled to help!"). Matched case-insensitively as whole phrases.
BOILERPLATE_PHRASES = (
    "happy to help", "glad to help", "thrilled", "delighted", "great question", "what a wonderful",
    "what a great", "i'm so excited", "i am so excited", "i hope this helps", "glad you asked", "absolutely!",
    "i'd be happy", "i would be happy", "i'd love to", "i would love to", "so glad",
)
_BOILERPLATE_RE = re.compile("|".join(re.escape(p) for p in BOILERPLATE_PHRASES), re.IGNORECASE)


def is_boilerplate(text: str) -> bool:
    """True when the answer contains one of `BOILERPLATE_PHRASES` (case-insensitive)."""
    return bool(_BOILERPLATE_RE.search(text))


def boilerplate_share(texts: Sequence[str]) -> float:
    """Share of answers that contain a stock phrase (`is_boilerplate`); 0.0 for no answers."""
    return float(np.mean([is_boilerplate(t) for t in texts])) if texts else 0.0
