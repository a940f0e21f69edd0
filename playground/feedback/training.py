"""Train an adapter from the stored votes, from the app: one job per process, in its own process group.

`VoteTraining.start` checks the request (a slug name no adapter uses, β, steps, seed), refuses while another job
runs in this process or when there are fewer usable votes (decisive, two different answers) than
`TrainingSettings.min_votes`, and then runs `models/train_adapter.py` steps `pairs train export --judge votes`
(no evaluate step: slow on a CPU) under `playground.feedback.guard` in a new session, at a lower CPU priority.
The trainer reads exactly the counted votes (`--limit`), writes into `<adapters dir>/.staging-<name>-<id>/`,
and the progress comes from its log (`train: step i/N`). `cancel()` SIGTERMs the process group, SIGKILLs it
`term_grace_s` later, and the job reports "cancelled". On success the card gets the votes used and the judges'
agreement with them, every file is fsynced, the folder is renamed to `<adapters dir>/<name>/` (atomic) and loaded
into the Playground (`pg.add_trained`); only then does the job report "done". An app killed at any point leaves
either no adapter or a complete one, which the next start loads (`Playground.load_trained`). The process, the
progress parsing and the fsyncs are `train_job.py`.
"""
from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from playground import registry
from playground.feedback.analysis import judge_agreement
from playground.feedback.export import vote_pairs
from playground.feedback.train_job import (JobPaths, LogProgress, Phases, TrainRequest, fsync_dir, fsync_tree, kill_group,
                                           spawn, vote_commands)
from playground.feedback.vote import FeedbackError, FeedbackUnavailable, Vote
from playground.settings.request import LIMITS
from playground.settings.votes import TrainingSettings
from playground.settings.validation import InputError, check_int, check_number

__all__ = ["JobPaths", "TrainRequest", "TrainStatus", "TrainingError", "VoteTraining", "card_summary", "vote_commands"]

STAGING = ".staging-"
_SLOT = threading.Lock()  # one job per process, whichever VoteTraining runs it
_ACTIVE: dict[str, str] = {}  # "name": the adapter the running job trains (for the refusal message)


class TrainingError(InputError):
    """A bad parameter or a job that cannot start now; the message names the parameter and is shown as is."""


@dataclass(frozen=True)
class TrainStatus:
    state: str  # idle | running | done | failed | cancelled
    fraction: float = 0.0
    message: str = ""
    request: TrainRequest | None = None
    card: dict[str, Any] | None = None  # when done
    log: tuple[str, ...] = ()  # the trainer's last lines

    @property
    def running(self) -> bool:
        return self.state == "running"


def card_summary(card: Mapping[str, Any]) -> str:
    """The card in one paragraph: votes used, β, steps, loss and each judge's agreement with those votes."""
    votes = card.get("votes") or {}
    agree = "; ".join(f"{j} {a['agree']}/{a['n']} = {100 * a['share']:.0f}% [{100 * a['low']:.0f}%, {100 * a['high']:.0f}%]"
                      for j, a in (card.get("judge_agreement") or {}).items() if a.get("share") is not None)
    loss = card.get("train_loss")
    return (f"**{card.get('name')}**: trained on **{card.get('votes_used')} votes** (of {votes.get('decisive', '?')} decisive; "
            f"ties {votes.get('tie', 0)} and both-bad {votes.get('both_bad', 0)} dropped), β = {card.get('beta')}, "
            f"{card.get('steps')} DPO steps" + (f", final loss {loss:.3f}" if isinstance(loss, (int, float)) else "")
            + f". Judges agreeing with these votes: {agree or 'no judge scored them'}.")


class VoteTraining:
    """The app's training jobs. `votes()` returns the stored votes (e.g. `DuelService.store().votes`); `pg` is the
    Playground (or LazyPlayground) that gets the adapter; `commands` builds the job's phases (tests use a fake)."""

    def __init__(self, pg: Any, votes: Callable[[], Sequence[Vote]], settings: TrainingSettings,
                 commands: Callable[[TrainRequest, JobPaths], Phases] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.pg, self.votes, self.settings = pg, votes, settings
        self._commands = commands or (lambda req, paths: vote_commands(req, paths, settings))
        self._env = dict(env or {})  # extra environment of the trainer, e.g. PLAYGROUND_DATABASE_URL
        self._cond = threading.Condition()
        self._status = TrainStatus("idle")
        self._proc: subprocess.Popen | None = None
        self._owner = ""
        self._stop_reason = ""
        self._stop_state = "cancelled"

    # --- checks ---------------------------------------------------------------------------------------
    def check(self, name: object, beta: object, steps: object, seed: object = 0) -> TrainRequest:
        """The request, checked; TrainingError names the parameter (or says that training is off)."""
        s = self.settings
        if not s.allowed:
            raise TrainingError("training is off on this server: the operator enables it with PLAYGROUND_ALLOW_TRAINING=1 "
                                "(a job takes the CPU for minutes)")
        text = name.strip() if isinstance(name, str) else ""
        if not text or len(text) > s.max_name_chars or not s.name_pattern.fullmatch(text):
            raise TrainingError(f"name must be 1–{s.max_name_chars} lowercase letters, digits, '.', '-' or '_', starting "
                                f"and ending with a letter or digit (e.g. my-votes-b0.1); got {name!r}")
        if text in self.pg.adapters or text in registry.ADAPTERS or (s.adapters_dir / text).exists():
            raise TrainingError(f"name: an adapter called {text!r} exists already; choose another name")
        try:
            return TrainRequest(text, check_number("beta (β)", beta, s.min_beta, s.max_beta),
                                check_int("steps", steps, 1, s.max_steps), check_int("seed", seed, 0, LIMITS.max_seed))
        except InputError as err:
            raise TrainingError(str(err)) from None

    def _usable_votes(self) -> tuple[int, dict[str, Any], dict[str, Any]]:
        """(pairs, their counts, the judges' agreement with the votes behind them); refused below min_votes."""
        try:
            votes = list(self.votes())
        except (FeedbackError, FeedbackUnavailable) as err:
            raise TrainingError(f"votes: {err}") from None
        pairs, counts = vote_pairs(votes)
        if len(pairs) < self.settings.min_votes:
            raise TrainingError(f"votes: {len(pairs)} usable votes (decisive, two different answers; {counts['votes']} "
                                f"stored, {counts['decisive']} decisive); training needs at least {self.settings.min_votes}")
        used = {p["vote_id"] for p in pairs}
        agreement = {j: {"agree": a.agree, "n": a.n, "judge_ties": a.judge_ties, "share": _num(a.interval.estimate),
                         "low": _num(a.interval.low), "high": _num(a.interval.high)}
                     for j, a in judge_agreement(v for v in votes if getattr(v, "id", None) in used).items()}
        return len(pairs), counts, agreement

    # --- the job --------------------------------------------------------------------------------------
    def start(self, name: object, beta: object, steps: object, seed: object = 0, owner: str = "") -> TrainStatus:
        """Start a job (in the background) and return its first status; TrainingError when it cannot start."""
        req = self.check(name, beta, steps, seed)
        if not _SLOT.acquire(blocking=False):
            raise TrainingError(f"a training job is already running (adapter {_ACTIVE.get('name', '?')!r}); one job "
                                "at a time: wait for it to finish or cancel it")
        paths = None
        try:
            n, _counts, agreement = self._usable_votes()
            self._clean_stale()
            paths = JobPaths(self.settings.adapters_dir / f"{STAGING}{req.name}-{secrets.token_hex(4)}",
                             str(self.pg.base_name), n)
            paths.staging.mkdir(parents=True)
            phases = self._commands(req, paths)
            proc = spawn(phases, self.settings.nice, self._env)
        except BaseException:
            if paths is not None:
                shutil.rmtree(paths.staging, ignore_errors=True)
            _SLOT.release()
            raise
        _ACTIVE["name"] = req.name
        with self._cond:
            self._proc, self._owner, self._stop_reason, self._stop_state = proc, owner, "", "cancelled"
            self._status = TrainStatus("running", 0.0, f"starting: {n} votes, β = {req.beta:g}, {req.steps} steps", req)
            status = self._status
        threading.Thread(target=self._run, args=(proc, req, paths, [p[2] for p in phases], agreement),
                         name=f"train-{req.name}", daemon=True).start()
        return status

    def _run(self, proc: subprocess.Popen, req: TrainRequest, paths: JobPaths, shares: list[float],
             agreement: dict[str, Any]) -> None:
        timer = threading.Timer(self.settings.timeout_s, self._stop,
                                args=(f"over the time limit of {self.settings.timeout_s:.0f} s", "failed"))
        timer.daemon = True
        timer.start()
        log: deque[str] = deque(maxlen=40)
        progress = LogProgress(shares)
        final = TrainStatus("failed", 0.0, "the trainer stopped unexpectedly", req)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                if not line:
                    continue
                log.append(line)
                fraction, message = progress.update(line)
                self._set(replace(self._status, fraction=fraction, message=message, log=tuple(log)))
            code = proc.wait()
            timer.cancel()
            if self._stop_reason:
                final = TrainStatus(self._stop_state, self._status.fraction, f"{self._stop_state} ({self._stop_reason}); "
                                    "nothing was saved", req, log=tuple(log))
            elif code != 0:
                final = TrainStatus("failed", self._status.fraction, f"training failed (exit code {code}): "
                                    + " | ".join(list(log)[-3:]), req, log=tuple(log))
            else:
                card = self._finish(req, paths, agreement)
                final = TrainStatus("done", 1.0, card_summary(card), req, card, tuple(log))
        except Exception as err:  # noqa: BLE001 - whatever went wrong is the job's result, shown to the user
            if self._stop_reason:  # cancelled (or timed out) while the adapter was being saved
                final = TrainStatus(self._stop_state, self._status.fraction, f"{self._stop_state} "
                                    f"({self._stop_reason}); nothing was saved", req, log=tuple(log))
            else:
                final = TrainStatus("failed", self._status.fraction, f"training failed: {err}", req, log=tuple(log))
        finally:
            timer.cancel()
            if proc.stdin:
                proc.stdin.close()
            shutil.rmtree(paths.staging, ignore_errors=True)
            with self._cond:  # the final status and a free slot together: a new start waits for this block
                self._proc, self._status = None, final
                _ACTIVE.clear()
                _SLOT.release()
                self._cond.notify_all()

    def _finish(self, req: TrainRequest, paths: JobPaths, agreement: dict[str, Any]) -> dict[str, Any]:
        """Complete the card, make the folder durable, rename it into place, load it; the card."""
        out = paths.out_dir
        missing = [f for f in ("adapter_config.json", "adapter_model.safetensors", "card.json") if not (out / f).is_file()]
        if missing:
            raise RuntimeError(f"the trainer wrote no {', '.join(missing)} in {out}")
        card = json.loads((out / "card.json").read_text(encoding="utf-8"))
        votes_used = int((card.get("votes") or {}).get("pairs", paths.limit))
        card.update(name=req.name, votes_used=votes_used, judge_agreement=agreement,
                    description=(f"Trained in the app on {votes_used} votes, β = {req.beta:g}, "
                                 f"{card.get('steps', req.steps)} steps"),
                    trained_in_app={"finished_at": datetime.now(UTC).isoformat(timespec="seconds"), "seed": req.seed})
        tmp = out / "card.json.tmp"
        tmp.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(out / "card.json")
        fsync_tree(out)
        final = self.settings.adapters_dir / req.name
        with self._cond:  # a cancel that came in time wins; after the rename the job is done
            if self._stop_reason:
                raise RuntimeError(f"cancelled ({self._stop_reason})")
            if final.exists():
                raise RuntimeError(f"name: {final} appeared while training; nothing was saved")
            out.rename(final)
            fsync_dir(final.parent)
        try:
            self.pg.add_trained(final)
        except Exception:
            shutil.rmtree(final, ignore_errors=True)  # never acknowledged: leave no adapter that fails to load
            raise
        return card

    def _clean_stale(self) -> None:
        """Remove staging folders of jobs that died with their app (no live job can be older than timeout_s)."""
        root = self.settings.adapters_dir
        if root.is_dir():
            for p in root.glob(f"{STAGING}*"):
                if time.time() - p.stat().st_mtime > self.settings.timeout_s + 60:
                    shutil.rmtree(p, ignore_errors=True)

    # --- control ----------------------------------------------------------------------------------------
    def _set(self, status: TrainStatus) -> None:
        with self._cond:
            self._status = status
            self._cond.notify_all()

    def status(self) -> TrainStatus:
        with self._cond:
            return self._status

    def wait(self, timeout: float) -> TrainStatus:
        """The status once the job has ended, or after `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: not self._status.running, timeout)
            return self._status

    def cancel(self, owner: str | None = None) -> bool:
        """Stop the running job (only its owner may, when `owner` is given); False when none runs."""
        with self._cond:
            if self._proc is None or not self._status.running:
                return False
            if owner is not None and self._owner and owner != self._owner:
                raise TrainingError("cancel: the running job was started by another visitor")
        return self._stop("cancelled by the user")

    def _stop(self, reason: str, state: str = "cancelled") -> bool:
        with self._cond:
            proc = self._proc
            if proc is None or self._stop_reason:
                return proc is not None
            self._stop_reason, self._stop_state = reason, state
        kill_group(proc, self.settings.term_grace_s)
        return True


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 4)  # NaN (no votes) → None
