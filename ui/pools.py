"""The app's concurrency pools, declared once: every tab's events pass one of these to Gradio.

Gradio runs the events that share a `concurrency_id` in one pool of `concurrency_limit` workers; the pools
keep kinds of work apart so none starves another (sizes in `playground.settings.server.ServeSettings`):

- `LM`: interactive LM events (chat turns, duels, the token view), handed to the scheduler together; it batches
  them into one decode loop, so the pool bounds waiting there, not compute. Each has the chat's deadline.
- `LM_JOBS`: long LM jobs (sweeps, control comparisons, probes, DeRa checks), one at a time by default, with
  the sweep's deadline; chat keeps its own slots whatever the jobs do.
- `VOTES`: "Prefer this one" and the duel's votes (judge the answers, store the votes).
- `DIFFUSION`: the diffusion tab's sampling.
- `ESTIMATES`: a job's cost estimate as its knobs move; one at a time, the last one wins.
- `quick(name)`: UI-only updates (show/hide, pickers) that never wait behind a model: unbounded, private.
"""
from __future__ import annotations

from playground.settings.request import LIMITS
from playground.settings.server import SERVE

LM = {"concurrency_id": "lm", "concurrency_limit": SERVE.lm_concurrency, "time_limit": LIMITS.request_timeout_s}
LM_JOBS = {"concurrency_id": "lm_jobs", "concurrency_limit": SERVE.job_concurrency, "time_limit": LIMITS.sweep_timeout_s}
VOTES = {"concurrency_id": "vote", "concurrency_limit": SERVE.vote_concurrency, "show_progress": "hidden"}
DIFFUSION = {"concurrency_id": "diffusion", "concurrency_limit": SERVE.diffusion_concurrency}
ESTIMATES = {"concurrency_id": "estimates", "concurrency_limit": 1, "trigger_mode": "always_last"}


def quick(name: str) -> dict:
    """A pool of its own for UI-only updates of `name` (a tab or panel): no limit, hidden progress, not in the API."""
    return {"concurrency_id": name, "concurrency_limit": None, "show_progress": "hidden", "api_visibility": "private"}
