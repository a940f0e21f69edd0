"""Share links that replay a turn: its prompt and every setting in the URL query, checked on the way back in.

`link_query(row, adapters)` writes the query of a finished turn; `parse_link(params, adapters)` reads one
back (e.g. `gr.Request.query_params`), checked through `playground.settings.validation`: a bad or missing value
raises `InputError` naming the query parameter. The same prompt and settings decode the same tokens
(seeded, batch-invariant), so opening the link and pressing Replay reproduces the answers. The adapter's
content hash travels too: a link made with other adapter weights says so instead of silently differing.
The hash must have its exact form (16 hex digits) or the link is refused; other echoed values (an unknown
adapter or mode, a number that is not one) reach the page only through `ui.components.plain` (HTML-escaped).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Mapping
from urllib.parse import urlencode

from playground.settings.request import DecodeSettings, nominal_beta
from playground.settings.validation import InputError, check_choice, check_prompt, decode_settings

if TYPE_CHECKING:
    from playground.chat.conversation import Row

PARAMS = ("prompt", "adapter", "adapter_sha256", "kl_strength", "lambda", "mode", "temperature", "top_p",
          "max_new_tokens", "seed")
HASH_CHARS = 16  # hex digits of the adapter's sha256 kept in the link
HASH_FORM = re.compile(f"[0-9a-f]{{{HASH_CHARS}}}")  # its exact form; anything else is refused, never echoed


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_sha256(adapter_dir: Path | str | None) -> str:
    """The full sha256 of an adapter's weights file (adapter_model.safetensors, hashed once per file version);
    '' when there is none. The API and the conversation export report it; share links keep its first digits."""
    f = Path(adapter_dir) / "adapter_model.safetensors" if adapter_dir is not None else None
    if f is None or not f.is_file():
        return ""
    st = f.stat()
    return _file_sha256(str(f), st.st_size, st.st_mtime_ns)


def adapter_sha256(adapter_dir: Path | str) -> str:
    """The first HASH_CHARS hex digits of `weights_sha256`: what a share link carries."""
    return weights_sha256(adapter_dir)[:HASH_CHARS]


def _num(x: float) -> str:
    """Shortest text that reads back as the same float (so the replay decodes the same tokens)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def link_query(row: Row, adapters: Mapping) -> str:
    """The URL query that replays this turn (β when the user set β, else λ)."""
    t, d = row.turn, row.turn.decode
    q = {"prompt": t.prompt, "adapter": t.adapter, "adapter_sha256": adapter_sha256(adapters[t.adapter].path)}
    if row.kl_strength is not None:
        q["kl_strength"] = _num(row.kl_strength)
    else:
        q["lambda"] = _num(d.lam)
    q |= {"mode": d.mode, "temperature": _num(d.temperature), "top_p": _num(d.top_p),
          "max_new_tokens": str(d.max_new_tokens), "seed": str(d.seed)}
    return urlencode(q)


@dataclass(frozen=True)
class SharedTurn:
    """What a share link sets: the prompt and the chat tab's knobs (λ on the slider), plus notes for the user.
    `kl_strength` is the nominal β = β_train/λ (the link's own β when it carries one; ∞ for λ = 0)."""

    prompt: str
    adapter: str
    kl_strength: float
    decode: DecodeSettings  # checked once from the link (λ from its β when it carries one)
    notes: tuple[str, ...] = ()

    # The knobs the link sets on the tab's controls, read from `decode`.
    lam = property(lambda self: self.decode.lam)
    mode = property(lambda self: self.decode.mode)
    temperature = property(lambda self: self.decode.temperature)
    top_p = property(lambda self: self.decode.top_p)
    max_new_tokens = property(lambda self: self.decode.max_new_tokens)
    seed = property(lambda self: self.decode.seed)


def _renamed(err: InputError, param: str) -> InputError:
    text = str(err)
    return InputError(text if text.startswith(param) else f"{param}: {text}")


def parse_link(params: Mapping[str, str], adapters: Mapping) -> SharedTurn | None:
    """None when the query holds no share link; a checked `SharedTurn`; or InputError naming the parameter."""
    if not any(k in params for k in PARAMS):
        return None
    for required in ("prompt", "adapter"):
        if required not in params:
            raise InputError(f"share link: {required} is missing")
    try:
        prompt = check_prompt(params["prompt"])
    except InputError as err:
        raise _renamed(err, "prompt") from None
    name = check_choice("adapter", params["adapter"], sorted(adapters))
    beta_train = float(adapters[name].beta_train)
    beta, lam = params.get("kl_strength"), params.get("lambda")
    if beta is None and lam is None:
        raise InputError("share link: kl_strength (β) or lambda (λ) is missing")
    knobs = {k: params[k] for k in ("mode", "temperature", "top_p", "max_new_tokens", "seed") if k in params}
    d = decode_settings(kl_strength=beta, lam=lam if beta is None else None, beta_train=beta_train, **knobs)
    # The λ slider spans every λ the checks accept (0 … max_lambda), so any valid link can be set on it.
    kl = float(beta) if beta is not None else nominal_beta(beta_train, d.lam)
    notes = []
    want, have = params.get("adapter_sha256", ""), adapter_sha256(adapters[name].path)
    if want and not (isinstance(want, str) and HASH_FORM.fullmatch(want)):
        n = len(want) if isinstance(want, str) else 0
        got = f"{n} characters, not all of them 0-9 or a-f" if n == HASH_CHARS else f"{n} characters"
        raise InputError(f"adapter_sha256 must be {HASH_CHARS} lowercase hex digits (0-9, a-f), as Copy link writes it; "
                         f"got {got}")
    if want and have and want != have:
        notes.append(f"adapter {name} has changed since the link was made (sha256 {have} ≠ {want}): the answers may differ")
    return SharedTurn(prompt, name, kl, d, tuple(notes))
