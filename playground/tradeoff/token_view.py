"""Token-level view of one realigned answer: where does π_λ move away from the base model?

For each generated token: KL(π_λ ‖ π_base) at that position and whether the base model's top token
differs there ("shifted"); plus the share of shifted positions (the Trade-off tab's token view, and the
chat's "differences" highlight).
"""
from __future__ import annotations

from typing import Callable

from playground.settings.request import DecodeSettings, nominal_beta


def token_view(pg, prompt: str, adapter: str, d: DecodeSettings, should_stop: Callable[[], bool] = lambda: False) -> dict:
    """The realigned answer token by token: per-token KL(π_λ‖π_base), whether the base model's top token
    differs there ("shifted"), and the share of shifted positions. `prompt` and `d` are already checked."""
    stream = None
    for streams in pg.stream([pg.request(pg.encode(prompt), adapter, d)], should_stop=should_stop):
        stream = streams[0]
    tokens_all = stream.tokens if stream else []
    keep = [i for i, t in enumerate(tokens_all) if not pg.is_stop(t)]
    pieces = pg.pieces(tokens_all)
    tokens = [{"text": p, "kl": stream.kl[i], "shifted": stream.shifted[i]} for p, i in zip(pieces, keep)]
    n = len(tokens)
    beta = nominal_beta(pg.beta_train(adapter), d.lam)
    return {"prompt": prompt, "adapter": adapter, "lambda": d.lam, "kl_strength": None if d.lam == 0 else beta,
            "temperature": d.temperature, "seed": d.seed, "text": "".join(pieces), "tokens": tokens,
            "kl_mean": sum(t["kl"] for t in tokens) / n if n else 0.0, "kl_sum": sum(t["kl"] for t in tokens),
            "shifted_share": sum(t["shifted"] for t in tokens) / n if n else 0.0, "done": bool(stream and stream.done)}
