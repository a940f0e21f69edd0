"""Engine requests for the lm tests: knobs as keywords, over the settings these tests were written against.

The engine's `Request` carries one `DecodeSettings`; these tests decode short greedy-or-sampled answers with
λ = 1, no nucleus truncation and 64 tokens unless a test says otherwise (the temperature is the settings' own
default).
"""
from __future__ import annotations

from dataclasses import replace

from playground.lm.request import Request
from playground.settings.request import DecodeSettings

BASE = DecodeSettings(lam=1.0, top_p=1.0, max_new_tokens=64)
_DECODE = {"lam", "mode", "temperature", "top_p", "max_new_tokens", "seed"}


def request(prompt_ids, adapter=None, lam=None, **knobs) -> Request:
    """`Request(prompt_ids, adapter, settings)` with the settings' fields (lam, mode, temperature, top_p,
    max_new_tokens, seed) given as keywords; logprobs, cfg_scale and uncond_prompt_ids go to the request."""
    decode = {k: knobs.pop(k) for k in list(knobs) if k in _DECODE}
    if lam is not None:
        decode["lam"] = lam
    return Request(tuple(prompt_ids), adapter, replace(BASE, **decode), **knobs)


def reseeded(req: Request, seed: int) -> Request:
    """The same request with another seed."""
    return replace(req, settings=replace(req.settings, seed=seed))
