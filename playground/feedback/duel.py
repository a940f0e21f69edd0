"""Blind duels: two answers to one prompt at two different λ, shown as A and B, and the human's vote on them.

`DuelService.start` draws two different λ from `FeedbackSettings.duel_lambdas` (in random order, seeded),
decodes both answers in one batch through the `Playground` facade, scores both with every built-in judge and
keeps the pending duel in memory (bounded, expiring after `duel_expiry_s`), keyed by a random duel id and
bound to the browser session that asked for it; `DuelService.stream` does the same step by step (the app
shows both answers as they grow, and its Stop ends them: `DuelStopped`, nothing kept). `DuelService.vote`
turns the human's choice into a `Vote` (idempotency key = duel id; both answers' settings, seed included, so
each answer can be regenerated exactly) and stores it. The vote store opens lazily, on the first vote: when the database is unavailable,
voting raises `FeedbackUnavailable` while generating (and the rest of the app) keeps working.
`DuelService.vote_columns` records the Side-by-side tab's "Prefer this one" through the same store.
"""
from __future__ import annotations

import hashlib
import random
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playground.feedback.vote import OUTCOMES, FeedbackError, FeedbackUnavailable, Vote, hash_session
from playground.settings.request import COLUMNS, DEFAULT_DECODE, LIMITS
from playground.settings.votes import FEEDBACK_LIMITS, FeedbackSettings
from playground.settings.validation import check_choice, check_prompt, decode_settings

DUEL_JUDGES = ("upbeat", "concise", "on_topic")  # every built-in judge scores both answers
MAX_PENDING = 2000  # duels waiting for a vote, across all sessions; the oldest is dropped beyond this


@dataclass
class Duel:
    """One pending duel. `answer_a` / `answer_b` are what the user sees; the rest is revealed after the vote."""

    duel_id: str
    prompt: str
    adapter: str
    answer_a: str
    answer_b: str
    tokens_a: int
    tokens_b: int
    settings_a: dict[str, Any]  # lambda, mode, temperature, top_p, max_new_tokens, seed
    settings_b: dict[str, Any]
    judge_scores: dict[str, list[float]]  # {judge: [score_a, score_b]}
    session_id: str = field(repr=False, default="")  # kept in memory only; the store gets its salted hash
    created: float = 0.0  # monotonic seconds
    outcome: str | None = None  # set once voted
    vote_id: int | None = None

    def reveal(self) -> dict[str, Any]:
        """The settings behind A and B and the judges' scores (shown only after the vote)."""
        return {"a": {**self.settings_a, "tokens": self.tokens_a}, "b": {**self.settings_b, "tokens": self.tokens_b},
                "judge_scores": {k: list(v) for k, v in self.judge_scores.items()}, "outcome": self.outcome,
                "vote_id": self.vote_id}


class DuelStopped(FeedbackError):
    """The duel's answers were stopped (Stop, a disconnect, the time limit) before both ended: nothing to vote on."""


@dataclass
class DuelStep:
    """Both answers so far while a duel streams; the last step carries the kept `duel` (then the texts are its own)."""

    answer_a: str
    answer_b: str
    tokens_a: int
    tokens_b: int
    duel: Duel | None = None


@dataclass
class _Plan:
    session_id: str
    adapter: str
    prompts: list[str]
    drawn: list[tuple[Any, Any]]
    requests: list[Any]


def _answer_settings(d: Any) -> dict[str, Any]:
    return {"lambda": float(d.lam), "mode": d.mode, "temperature": float(d.temperature), "top_p": float(d.top_p),
            "max_new_tokens": int(d.max_new_tokens), "seed": int(d.seed)}


def adapter_hash(path: Path | str | None) -> str:
    """sha256 over an adapter folder's file names and bytes (identifies the exact weights voted on)."""
    if path is None or not Path(path).is_dir():
        return "unknown"
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class DuelService:
    """Start duels and record votes on them for one `Playground` (or a `LazyPlayground` still loading).

    `store_factory()` returns a `VoteStore` (default `VoteStore.open`, configured by the environment); it is
    called on the first vote, and again after a failure.
    """

    def __init__(self, pg: Any, store_factory: Callable[[], Any] | None = None, limits: FeedbackSettings | None = None,
                 judges: Sequence[str] = DUEL_JUDGES, max_new_tokens: int = DEFAULT_DECODE.max_new_tokens,
                 max_pending: int = MAX_PENDING, clock: Callable[[], float] = time.monotonic) -> None:
        if store_factory is None:
            from playground.feedback.store import VoteStore

            store_factory = VoteStore.open
        self.pg, self.limits, self.judges = pg, limits or FEEDBACK_LIMITS, tuple(judges)
        self.max_new_tokens, self.max_pending, self.clock = max_new_tokens, max_pending, clock
        self._store_factory = store_factory
        self._store: Any = None
        self._pending: OrderedDict[str, Duel] = OrderedDict()
        self._lock = threading.Lock()
        self._store_lock = threading.Lock()
        self._hashes: dict[str, str] = {}
        self._column_choices: OrderedDict[str, str] = OrderedDict()  # turn digest -> preferred column

    # --- the store, opened on first use -------------------------------------------------------------
    def store(self) -> Any:
        """The vote store, opened now if needed; FeedbackUnavailable with a clear message when it cannot be."""
        with self._store_lock:
            if self._store is None:
                try:
                    self._store = self._store_factory()
                except (FeedbackUnavailable, FeedbackError):
                    raise
                except Exception as e:  # noqa: BLE001 — any failure to open means "votes cannot be stored now"
                    raise FeedbackUnavailable(f"Votes cannot be stored right now: the vote database cannot be "
                                              f"opened ({type(e).__name__}: {e}). Chat keeps working.") from e
            return self._store

    def _drop_store(self, store: Any) -> None:
        with self._store_lock:
            if self._store is store:
                self._store = None
        try:
            store.close()
        except Exception:  # noqa: BLE001 — closing a broken store must not hide the original error
            pass

    def close(self) -> None:
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    # --- duels --------------------------------------------------------------------------------------
    def start(self, prompt: object, adapter: object, temperature: object, session_id: str, seed: int | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> Duel:
        """Decode two answers at two different λ (order random) in one batch and keep the duel for a vote.
        `seed` fixes the draw (λ pair, order, sampling seed); None draws a fresh one."""
        return self.start_many([prompt], adapter, temperature, session_id, [seed], should_stop)[0]

    def start_many(self, prompts: Sequence[object], adapter: object, temperature: object, session_id: str,
                   seeds: Sequence[int | None] | None = None, should_stop: Callable[[], bool] = lambda: False
                   ) -> list[Duel]:
        """`start` for several prompts at once: every duel's two answers decode in ONE batch (a duel's result
        does not depend on what else is in the batch), then each is judged and kept. Used by
        `models/simulate_votes.py`; the app starts one duel per request (streamed: `stream`)."""
        plan = self._plan(prompts, adapter, temperature, session_id, seeds)
        steps = self.pg.stream(plan.requests, should_stop=should_stop)
        streams: list[Any] = (deque(steps, maxlen=1) or [[]])[0]  # the last step: every answer finished
        return self._finish(plan, streams)

    def stream(self, prompt: object, adapter: object, temperature: object, session_id: str, seed: int | None = None,
               should_stop: Callable[[], bool] = lambda: False) -> Iterator[DuelStep]:
        """`start`, streamed: a `DuelStep` with both answers' text so far after every decoding step (a character
        split over tokens shows once complete), then one with `duel` set once both are finished, judged and kept.
        Every check runs before the first step. Stopped (`should_stop`) before both answers end: `DuelStopped`,
        nothing is kept (an unfinished pair is not voted on)."""
        plan = self._plan([prompt], adapter, temperature, session_id, [seed])
        texts = [self.pg.detokenizer() for _ in plan.requests]
        streams: list[Any] = []
        for streams in self.pg.stream(plan.requests, should_stop=should_stop):
            shown = [t.feed(s.tokens).text for t, s in zip(texts, streams, strict=True)]
            counts = [len(t.ids) for t in texts]
            yield DuelStep(shown[0], shown[1], counts[0], counts[1])
        [duel] = self._finish(plan, streams, stopped=DuelStopped)
        yield DuelStep(duel.answer_a, duel.answer_b, duel.tokens_a, duel.tokens_b, duel)

    def _plan(self, prompts: Sequence[object], adapter: object, temperature: object, session_id: str,
              seeds: Sequence[int | None] | None) -> _Plan:
        """Check everything and draw each duel's λ pair, order and seed: the engine requests, nothing decoded yet."""
        if not session_id:
            raise FeedbackError("session_id: must not be empty")
        seeds = list(seeds) if seeds is not None else [None] * len(prompts)
        if len(seeds) != len(prompts) or not prompts:
            raise FeedbackError("start_many: one seed (or None) per prompt, at least one prompt")
        prompts = [check_prompt(p) for p in prompts]
        name = check_choice("adapter", adapter, sorted(self.pg.adapters))
        lambdas = sorted(set(float(x) for x in self.limits.duel_lambdas))
        if len(lambdas) < 2:
            raise FeedbackError("duel_lambdas: needs at least two different values")
        drawn, requests = [], []
        for prompt, seed in zip(prompts, seeds, strict=True):
            rng = random.Random(seed if seed is not None else secrets.randbits(64))
            lam_a, lam_b = rng.sample(lambdas, 2)  # two different λ, in random order
            knobs = dict(mode="logits", temperature=temperature, top_p=DEFAULT_DECODE.top_p,
                         max_new_tokens=self.max_new_tokens, seed=rng.randrange(LIMITS.max_seed + 1))
            d_a, d_b = decode_settings(lam=lam_a, **knobs), decode_settings(lam=lam_b, **knobs)
            ids = self.pg.encode(prompt)  # checks the prompt's token count
            drawn.append((d_a, d_b))
            requests += [self.pg.request(ids, name, d_a), self.pg.request(ids, name, d_b)]
        return _Plan(session_id, name, prompts, drawn, requests)

    def _finish(self, plan: _Plan, streams: Sequence[Any], stopped: type[FeedbackError] = FeedbackError) -> list[Duel]:
        """Judge the finished answers and keep each duel for its vote; `stopped` is raised when some did not finish."""
        if len(streams) != len(plan.requests) or not all(s.done for s in streams):
            raise stopped("the answers were not finished (stopped or timed out); generate again")
        prompts, drawn, name, session_id = plan.prompts, plan.drawn, plan.adapter, plan.session_id
        texts = [self.pg.text(s.tokens) for s in streams]
        tokens = [len(self.pg.answer_ids(s.tokens)) for s in streams]
        flat_prompts = [p for p in prompts for _ in range(2)]
        scores = {j: [float(x) for x in self.pg.judge(j).score(flat_prompts, texts)] for j in self.judges}
        duels = []
        for k, (prompt, (d_a, d_b)) in enumerate(zip(prompts, drawn, strict=True)):
            a, b = 2 * k, 2 * k + 1
            duels.append(Duel(duel_id=secrets.token_urlsafe(16), prompt=prompt, adapter=name, answer_a=texts[a],
                              answer_b=texts[b], tokens_a=tokens[a], tokens_b=tokens[b],
                              settings_a=_answer_settings(d_a), settings_b=_answer_settings(d_b),
                              judge_scores={j: [s[a], s[b]] for j, s in scores.items()}, session_id=session_id,
                              created=self.clock()))
        with self._lock:
            self._purge()
            for duel in duels:
                self._pending[duel.duel_id] = duel
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
        return duels

    def _purge(self) -> None:
        now = self.clock()
        for key in [k for k, d in self._pending.items() if now - d.created > self.limits.duel_expiry_s]:
            del self._pending[key]

    def pending(self, duel_id: str) -> Duel | None:
        with self._lock:
            return self._pending.get(duel_id)

    def _adapter_hash(self, adapter: str) -> str:
        if adapter not in self._hashes:
            self._hashes[adapter] = adapter_hash(getattr(self.pg.adapters.get(adapter), "path", None))
        return self._hashes[adapter]

    def vote(self, duel_id: object, outcome: object, session_id: str, source: str = "duel") -> tuple[int, dict[str, Any]]:
        """Store the vote on a pending duel: (vote id, reveal). The same vote again returns the same id.
        `source` is "duel" for a person, "simulated" for a scripted voter (models/simulate_votes.py)."""
        if outcome not in OUTCOMES:
            raise FeedbackError(f"outcome: must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        if not isinstance(duel_id, str) or not duel_id:
            raise FeedbackError("no duel to vote on: generate two answers first")
        with self._lock:
            duel = self._pending.get(duel_id)
            if duel is not None and self.clock() - duel.created > self.limits.duel_expiry_s:
                del self._pending[duel_id]
                raise FeedbackError(f"this duel expired (after {self.limits.duel_expiry_s / 60:g} minutes); "
                                    "generate two new answers")
        if duel is None:
            raise FeedbackError("unknown or expired duel: generate two new answers")
        if not session_id or session_id != duel.session_id:
            raise FeedbackError("this duel belongs to another session; generate your own answers to vote")
        if duel.outcome is not None and duel.outcome != outcome:
            raise FeedbackError(f"this duel was already voted on ({duel.outcome!r}); a vote cannot be changed")
        store = self.store()
        vote = Vote(idempotency_key=duel.duel_id, session_hash=hash_session(session_id, self._salt(store)),
                    base_model=self._base_model(), adapter=duel.adapter, adapter_hash=self._adapter_hash(duel.adapter),
                    prompt=duel.prompt, answer_a=duel.answer_a, answer_b=duel.answer_b, outcome=str(outcome),
                    source=source, tokens_a=duel.tokens_a, tokens_b=duel.tokens_b, settings_a=duel.settings_a,
                    settings_b=duel.settings_b, judge_scores=duel.judge_scores)
        vote_id = self._record(store, vote)
        with self._lock:
            duel.outcome, duel.vote_id = str(outcome), vote_id
        return vote_id, duel.reveal()

    def vote_columns(self, conv: Any, column: object, session_id: str) -> list[int]:
        """"Prefer this one" in the Side-by-side tab: `column` of the latest finished turn of `conv` beats each other
        column (two votes, source "column"; playground/feedback/columns.py). Returns the vote ids; the same click
        again returns the same ids, preferring another column of the same turn is refused."""
        from playground.feedback.columns import check_column, column_votes, last_finished_row, turn_digest

        chosen, row = check_column(column), last_finished_row(conv)
        if not session_id:
            raise FeedbackError("session_id: must not be empty")
        store = self.store()
        session_hash = hash_session(session_id, self._salt(store))
        digest = turn_digest(session_hash, conv)
        with self._lock:
            earlier = self._column_choices.get(digest)
            if earlier is not None and earlier != chosen:
                raise FeedbackError(f"column: you already preferred {earlier!r} on this turn; a vote cannot be changed")
            self._column_choices[digest] = chosen
            while len(self._column_choices) > self.max_pending:
                self._column_choices.popitem(last=False)
        ids: list[int] = []
        try:
            texts = [row.cells[c].text for c in COLUMNS]
            scores = {j: dict(zip(COLUMNS, self.pg.judge(j).score([row.turn.prompt] * len(texts), texts), strict=True))
                      for j in self.judges}
            for vote in column_votes(conv, chosen, session_hash=session_hash, base_model=self._base_model(),
                                     adapter_hash=self._adapter_hash(row.turn.adapter), judge_scores=scores,
                                     count=lambda tokens: len(self.pg.answer_ids(tokens))):
                ids.append(self._record(store, vote))
        except BaseException:
            with self._lock:
                if earlier is None and not ids:  # nothing stored: another column may still be chosen
                    self._column_choices.pop(digest, None)
            raise
        return ids

    def _record(self, store: Any, vote: Vote) -> int:
        try:
            vote_id, _created = store.record(vote)
        except FeedbackUnavailable:
            self._drop_store(store)  # reopened on the next vote: the database may be back (or fixed) by then
            raise
        return vote_id

    @staticmethod
    def _salt(store: Any) -> str:
        return store.settings.salt if getattr(store, "settings", None) is not None else FeedbackSettings.from_env().salt

    def _base_model(self) -> str:
        source = str(getattr(getattr(self.pg, "base", None), "source", "") or "unknown")
        limit = self.limits.max_name_chars
        return source if len(source) <= limit else Path(source).name[-limit:]
