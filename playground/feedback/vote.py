"""One human (or simulated) vote between two answers, its validation and the privacy-preserving session hash.

A vote stores everything needed to regenerate both answers exactly (model, adapter and its hash, prompt,
earlier conversation, each answer's λ, mode, temperature, top_p, max_new_tokens and seed) and what the
judges scored them, so agreement between humans and judges can be measured later. It never stores an IP
address or user agent: the browser session id is reduced to HMAC-SHA256(salt, session id), which groups a
session's votes without identifying anyone (the salt is secret and per deployment).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from playground.settings.votes import FEEDBACK_LIMITS, FeedbackSettings

OUTCOMES = ("a", "b", "tie", "both_bad")  # a / b preferred; equally good; both unacceptable
SOURCES = ("duel", "column", "simulated")  # blind duel; votes on the side-by-side columns; a simulated voter
MODES = ("logits", "weights")
ROLES = ("system", "user", "assistant")
SETTING_KEYS = ("lambda", "mode", "temperature", "top_p", "max_new_tokens", "seed")  # regenerate an answer
_HEX64 = re.compile(r"[0-9a-f]{64}")


class FeedbackError(ValueError):
    """A vote that cannot be stored as given (bad field, or an idempotency key reused for another vote)."""


class FeedbackUnavailable(RuntimeError):
    """The vote database cannot be reached or written; the message is meant for the user."""


@dataclass(frozen=True, kw_only=True)
class Vote:
    """A preference between answer A and answer B of the same prompt. All fields are keyword-only."""

    idempotency_key: str  # chosen by the client per vote click: a retry or double click sends the same key
    session_hash: str  # hash_session(session id, salt): 64 hex digits
    base_model: str
    adapter: str
    adapter_hash: str
    prompt: str
    answer_a: str
    answer_b: str
    outcome: str  # one of OUTCOMES
    source: str = "duel"  # one of SOURCES
    conversation: Sequence[Mapping[str, str]] = ()  # earlier turns: [{"role": ..., "content": ...}]
    tokens_a: int = 0
    tokens_b: int = 0
    settings_a: Mapping[str, Any] = field(default_factory=dict)  # SETTING_KEYS, extra keys allowed
    settings_b: Mapping[str, Any] = field(default_factory=dict)
    judge_scores: Mapping[str, Sequence[float]] = field(default_factory=dict)  # {judge: [score_a, score_b]}
    created_at: datetime | None = None  # UTC; set by the store


@dataclass(frozen=True, kw_only=True)
class StoredVote(Vote):
    """A vote read back from the store, with its row id."""

    id: int


def hash_session(session_id: str, salt: str) -> str:
    """HMAC-SHA256(key = salt, message = session id) as 64 hex digits: a salted hash nobody can reverse
    or recompute without the salt, stable for one session (so its votes can be grouped)."""
    if not session_id:
        raise FeedbackError("session_id: must not be empty")
    return hmac.new(salt.encode(), session_id.encode(), hashlib.sha256).hexdigest()


def _check_text(name: str, value: Any, limit: int, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise FeedbackError(f"{name}: must be text, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise FeedbackError(f"{name}: must not be empty")
    if len(value) > limit:
        raise FeedbackError(f"{name}: {len(value)} characters, at most {limit} allowed")
    if "\x00" in value:
        raise FeedbackError(f"{name}: contains a NUL character")


def _check_number(name: str, value: Any, low: float, high: float = math.inf, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise FeedbackError(f"{name}: must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise FeedbackError(f"{name}: {value!r} is outside [{low}, {high}]")


def _check_settings(name: str, settings: Any, limits: FeedbackSettings) -> None:
    if not isinstance(settings, Mapping):
        raise FeedbackError(f"{name}: must be a mapping of {', '.join(SETTING_KEYS)}")
    missing = [k for k in SETTING_KEYS if k not in settings]
    if missing:
        raise FeedbackError(f"{name}: missing {', '.join(missing)} (needed to regenerate the answer)")
    _check_number(f"{name}.lambda", settings["lambda"], 0.0, 1e3)
    _check_number(f"{name}.temperature", settings["temperature"], 0.0, 1e3)
    _check_number(f"{name}.top_p", settings["top_p"], 0.0, 1.0)
    _check_number(f"{name}.max_new_tokens", settings["max_new_tokens"], 1, 1e6, integer=True)
    _check_number(f"{name}.seed", settings["seed"], 0, 2**63 - 1, integer=True)
    if settings["mode"] not in MODES:
        raise FeedbackError(f"{name}.mode: must be one of {', '.join(MODES)}, got {settings['mode']!r}")
    _check_json(name, settings, limits)


def _check_json(name: str, value: Any, limits: FeedbackSettings, limit: int | None = None) -> None:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise FeedbackError(f"{name}: not JSON-serialisable ({e})") from None
    if len(text) > (limit or limits.max_json_chars):
        raise FeedbackError(f"{name}: {len(text)} characters of JSON, at most {limit or limits.max_json_chars}")


def validate_vote(vote: Vote, limits: FeedbackSettings | None = None) -> None:
    """Raise FeedbackError naming the first bad field; return None when the vote can be stored."""
    lim = limits or FEEDBACK_LIMITS
    if not isinstance(vote, Vote):
        raise FeedbackError(f"vote: must be a Vote, got {type(vote).__name__}")
    for name in ("idempotency_key", "base_model", "adapter", "adapter_hash"):
        _check_text(name, getattr(vote, name), lim.max_name_chars)
    if not isinstance(vote.session_hash, str) or not _HEX64.fullmatch(vote.session_hash):
        raise FeedbackError("session_hash: must be 64 lowercase hex digits (use hash_session)")
    _check_text("prompt", vote.prompt, lim.max_prompt_chars)
    _check_text("answer_a", vote.answer_a, lim.max_answer_chars, allow_empty=True)
    _check_text("answer_b", vote.answer_b, lim.max_answer_chars, allow_empty=True)
    if vote.outcome not in OUTCOMES:
        raise FeedbackError(f"outcome: must be one of {', '.join(OUTCOMES)}, got {vote.outcome!r}")
    if vote.source not in SOURCES:
        raise FeedbackError(f"source: must be one of {', '.join(SOURCES)}, got {vote.source!r}")
    if isinstance(vote.conversation, (str, bytes)) or not isinstance(vote.conversation, Sequence):
        raise FeedbackError("conversation: must be a list of {role, content} messages")
    for i, m in enumerate(vote.conversation):
        if not isinstance(m, Mapping) or set(m) != {"role", "content"}:
            raise FeedbackError(f"conversation[{i}]: must have exactly the keys role and content")
        if m["role"] not in ROLES:
            raise FeedbackError(f"conversation[{i}].role: must be one of {', '.join(ROLES)}, got {m['role']!r}")
        _check_text(f"conversation[{i}].content", m["content"], lim.max_conversation_chars, allow_empty=True)
    _check_json("conversation", list(vote.conversation), lim, lim.max_conversation_chars)
    _check_number("tokens_a", vote.tokens_a, 0, 1e7, integer=True)
    _check_number("tokens_b", vote.tokens_b, 0, 1e7, integer=True)
    _check_settings("settings_a", vote.settings_a, lim)
    _check_settings("settings_b", vote.settings_b, lim)
    if not isinstance(vote.judge_scores, Mapping):
        raise FeedbackError("judge_scores: must be a mapping {judge name: [score_a, score_b]}")
    for judge, scores in vote.judge_scores.items():
        _check_text("judge_scores (judge name)", judge, lim.max_name_chars)
        if isinstance(scores, (str, bytes)) or not isinstance(scores, Sequence) or len(scores) != 2:
            raise FeedbackError(f"judge_scores[{judge!r}]: must be [score_a, score_b]")
        for side, s in zip("ab", scores, strict=False):
            _check_number(f"judge_scores[{judge!r}] score_{side}", s, -math.inf, math.inf)
    _check_json("judge_scores", {k: list(v) for k, v in vote.judge_scores.items()}, lim)


def to_plain(vote: Vote) -> dict[str, Any]:
    """The vote as plain JSON types (tuples → lists, mappings → dicts); datetime kept as is."""
    out = {f.name: getattr(vote, f.name) for f in fields(vote)}
    out["conversation"] = [dict(m) for m in vote.conversation]
    out["settings_a"], out["settings_b"] = dict(vote.settings_a), dict(vote.settings_b)
    out["judge_scores"] = {k: [float(x) for x in v] for k, v in vote.judge_scores.items()}
    return out


def fingerprint(vote: Vote) -> str:
    """sha256 of the vote's canonical JSON, without id and created_at: equal for a retried submission."""
    plain = to_plain(vote)
    for transient in ("id", "created_at"):
        plain.pop(transient, None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
