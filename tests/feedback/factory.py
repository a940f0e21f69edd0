"""Valid votes for tests: `make_vote(**changes)` with every field filled in."""
from __future__ import annotations

from typing import Any

from playground.feedback.vote import Vote, hash_session

SALT = "test-salt"


def settings(lam: float = 1.0, temperature: float = 0.7, seed: int = 0, **extra: Any) -> dict[str, Any]:
    """One answer's decoding settings (everything that regenerates it)."""
    return {"lambda": lam, "mode": "logits", "temperature": temperature, "top_p": 0.95, "max_new_tokens": 64,
            "seed": seed, **extra}


def make_vote(key: str = "vote-1", **changes: Any) -> Vote:
    fields: dict[str, Any] = dict(
        idempotency_key=key, session_hash=hash_session("session-1", SALT), base_model="smollm2-135m-instruct",
        adapter="upbeat-b0.1", adapter_hash="3f2a" * 16, prompt="Give me a tip for a rainy day.",
        conversation=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        answer_a="Read a book by the window.", answer_b="Stay in.", tokens_a=8, tokens_b=3,
        settings_a=settings(1.0), settings_b=settings(0.0), judge_scores={"vader": [0.4, 0.1]}, outcome="a",
        source="duel")
    fields.update(changes)
    return Vote(**fields)
