"""Token-level view of one realigned answer: where does π_λ move away from the base model?

For each generated token: KL(π_λ ‖ π_base) at that position and whether the base model's top token
differs there ("shifted"); plus the share of shifted positions (the Trade-off tab's token view).
"""
from __future__ import annotations

from typing import Callable, Sequence

from playground.lm.prompts import decode, prompt_ids
from playground.settings import LIMITS
from playground.tradeoff.sweep import kl_strength
from playground.validation import check_choice, check_decode, check_number


def _pieces(tokenizer, tokens: Sequence[int], stop_ids: Sequence[int]) -> list[str]:
    """The text each token adds to the decoded answer (multi-byte characters land on their last token)."""
    out, prev = [], ""
    for i in range(len(tokens)):
        cur = decode(tokenizer, tokens[:i + 1], stop_ids)
        out.append(cur[len(prev):] if cur.startswith(prev) else tokenizer.decode([tokens[i]]))
        prev = cur
    return out


def token_view(pg, prompt: str, adapter: str, lam: float, temperature: float = 0.7, seed: int = 0,
               max_new_tokens: int = 64, top_p: float = 1.0, should_stop: Callable[[], bool] = lambda: False) -> dict:
    """The realigned answer token by token: per-token KL(π_λ‖π_base), whether the base model's top token
    differs there ("shifted"), and the share of shifted positions."""
    from playground.lm.engine import Request, Stream

    adapter = check_choice("adapter", adapter, sorted(pg.adapters))
    lam = check_number("lambda", lam, LIMITS.min_lambda, LIMITS.max_lambda)
    temperature, top_p, max_new_tokens, seed = check_decode(temperature, top_p, max_new_tokens, seed)
    ids = prompt_ids(pg.tokenizer, (), prompt, pg.chat)
    req = Request(ids, adapter, lam, "logits", temperature, top_p, max_new_tokens, seed)
    stream = Stream()
    for streams in pg.engine.stream([req], should_stop=should_stop):
        stream = streams[0]
    keep = [i for i, t in enumerate(stream.tokens) if t not in set(pg.stop_ids)]
    pieces = _pieces(pg.tokenizer, [stream.tokens[i] for i in keep], pg.stop_ids)
    tokens = [{"text": p, "kl": stream.kl[i], "shifted": stream.shifted[i]} for p, i in zip(pieces, keep)]
    n = len(tokens)
    beta = kl_strength(pg.adapters[adapter].beta_train, lam)
    return {"prompt": prompt, "adapter": adapter, "lambda": lam, "kl_strength": beta,
            "temperature": temperature, "seed": seed, "text": "".join(pieces), "tokens": tokens,
            "kl_mean": sum(t["kl"] for t in tokens) / n if n else 0.0, "kl_sum": sum(t["kl"] for t in tokens),
            "shifted_share": sum(t["shifted"] for t in tokens) / n if n else 0.0, "done": stream.done}
