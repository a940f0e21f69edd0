"""The /v1 routes' limits, taken from the app's settings (playground/settings/) so the API and the UI share them."""
from __future__ import annotations

import os
from dataclasses import dataclass

from playground.chat.knobs import DEFAULT_LAMBDA
from playground.settings.request import LIMITS
from playground.settings.server import SCHEDULER, SERVE

BASE_MODEL = "base"  # the model id of the base policy (λ = 0); every adapter's name is the id of its realigned policy
API_KEY_ENV = "PLAYGROUND_API_KEY"


@dataclass(frozen=True)
class ApiSettings:
    # /v1 requests decoding at once (each is one scheduler submission), as many as the chat's LM event pool.
    max_active: int = SERVE.lm_concurrency
    # Requests waiting for one of those slots; beyond it 429 with Retry-After at once (the Gradio queue's size).
    max_waiting: int = SERVE.queue_max_size
    # Requests (waiting or decoding) per client address, as the scheduler caps a client's submissions.
    per_client: int = SCHEDULER.max_per_client
    # Wall-clock limit of one request, waiting for a slot and decoding each (the chat's limit); frees the rows.
    timeout_s: float = LIMITS.request_timeout_s
    # Choices per request (`n`): they decode as one interactive submission (more would be a bulk one, a sweep).
    max_n: int = SCHEDULER.bulk_threshold
    max_stop: int = 4  # stop sequences, as OpenAI allows
    max_stop_chars: int = 64
    max_top_logprobs: int = 20  # as OpenAI allows
    # λ when a request names neither `lambda` nor `kl_strength`: the chat tab's starting point (β = 2·β_train).
    default_lambda: float = DEFAULT_LAMBDA


API = ApiSettings()


def api_key() -> str | None:
    """The Bearer token /v1 requires (PLAYGROUND_API_KEY), None when unset or empty (then /v1 is open)."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    return key or None
