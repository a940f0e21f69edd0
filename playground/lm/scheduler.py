"""Continuous batching: one decode loop on the engine's weights; submissions join and leave between steps.

Scheduling is per iteration, not per request (Orca, OSDI 2022; vLLM, TGI): a single thread runs

    admit   waiting submissions join the running batch: their prompts are prefilled into free KV slots,
            all of them in one forward
    sample  every live request draws its next token from ℓ_λ = ℓ_base + λ(ℓ_tuned − ℓ_base)
    publish each submission's streams are updated; finished and cancelled requests leave at once
    advance one decoding step for all rows that are left (one batched forward on the shared weights)

A submission is a list of `Request`s that belong together (the three columns of a chat turn, a sweep)
and streams its own `list[Stream]` back after each step it takes part in. Fairness: submissions of more
than `bulk_threshold` requests (sweeps) join in chunks of `bulk_chunk` requests and may hold at most
`bulk_rows` of the `max_rows` forward rows, so an interactive turn submitted during a sweep finds room at
the next step; interactive submissions are admitted first, in arrival order. At most `prefill_tokens`
prompt tokens are prefilled per step (at least one submission), so joining never stalls the running rows
for long, and the KV cache only grows within `max_kv_mb`. A row's KV slot is as wide as its width class
(`kv_widths`, kv_pools.py), not as the longest row, so a chat turn's short rows beside a sweep's long ones
take little of that budget. At most `max_waiting`
submissions wait to start; past that `submit` raises the runner's `refusal` ("busy, try again in N s"; the
facade makes it its InputError). A `client` key caps that client's concurrent submissions at `max_per_client`.

Calls go one way: the scheduler decodes through a narrow `Runner` (the engine hands it itself): one forward
under the shared lock, a decoder factory, the stop ids and the adapter version. It never imports the engine.

Because every row's computation is batch-invariant (see projections.py, kv_cache.py, sampling.py), a
request's tokens are the same whether it decodes alone or beside others that join and leave at other steps.
"""
from __future__ import annotations

import atexit
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import torch

from playground.lm.batch import RunningBatch, routes_of, row_prompts
from playground.lm.request import Request, Stream
from playground.runtime.threads import LOOP_THREAD, release_openmp_pool
from playground.runtime import memory
from playground.settings.server import SCHEDULER, SchedulerSettings

SchedulerConfig = SchedulerSettings  # the settings object of one scheduler (playground/settings/)


class Runner(Protocol):
    """What the scheduler needs from the engine that owns it (playground/lm/engine.py `Engine` is one)."""

    stop_ids: torch.Tensor  # tokens that end an answer
    refusal: type[Exception]  # raised when a submission is refused (queue or client share full)

    @property
    def adapter_version(self) -> int: ...  # changes when adapters are added: the decoder is rebuilt

    def check_adapter(self, name: str | None) -> None: ...  # KeyError for an adapter that is not loaded

    def forward(self, call: Callable[[], torch.Tensor]) -> torch.Tensor: ...  # one forward under the shared lock

    def new_decoder(self, widths: Sequence[int] | None = None): ...  # a row decoder (add / remove / step, a KV cache)


class Submission:
    """Requests submitted together; their streams fill in as the scheduler decodes them."""

    def __init__(self, requests: Sequence[Request], should_stop: Callable[[], bool] | None, client: str | None,
                 deadline: float | None, bulk: bool) -> None:
        self.requests, self.client, self.deadline, self.bulk = list(requests), client, deadline, bulk
        self.should_stop = should_stop or (lambda: False)
        self.streams = [Stream() for _ in self.requests]
        self.pending = deque(range(len(self.requests)))  # request indices not admitted yet
        self.admitted = 0  # requests that joined the batch
        self.start = time.perf_counter()
        self.version = 0  # steps published
        self.closed = False  # finished, cancelled or failed
        self.cancelled = False
        self.error: Exception | None = None

    def rows(self, indices: Sequence[int]) -> int:
        return sum(len(routes_of(self.requests[i])) for i in indices)

    def kv_rows(self, indices: Sequence[int], kv, extra: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
        """`extra` (rows, longest reach per KV pool) with these requests' rows added to their pools."""
        out = dict(extra)
        for i in indices:
            for prompt in row_prompts(self.requests[i]):  # a guided request's unconditional rows have their own length
                reach = len(prompt) + self.requests[i].settings.max_new_tokens
                p = kv.place(reach, len(prompt))
                rows, cols = out.get(p, (0, 0))
                out[p] = (rows + 1, max(cols, reach))
        return out

    def prefill_tokens(self, indices: Sequence[int]) -> int:
        """Prompt tokens the decoder prefills for these requests (identical prompt + route rows are computed once)."""
        rows = {(p, r) for i in indices for p, r in zip(row_prompts(self.requests[i]), routes_of(self.requests[i]))}
        return sum(len(p) for p, _ in rows)

    def cancel(self) -> None:
        """Stop decoding this submission at the next step boundary."""
        self.cancelled = True

    def stopping(self) -> bool:
        if self.cancelled or (self.deadline is not None and time.monotonic() > self.deadline):
            return True
        try:
            return bool(self.should_stop())
        except Exception:  # noqa: BLE001 - a broken callback stops its own submission, not the loop
            return True


class Scheduler:
    """The decode loop thread and its queue. Submit from any thread; iterate the returned stream."""

    def __init__(self, runner: Runner, config: SchedulerSettings = SCHEDULER) -> None:
        self.runner, self.config = runner, config
        self.threads = torch.get_num_threads()
        self.cond = threading.Condition()
        self.waiting: deque[Submission] = deque()  # not fully admitted, in arrival order
        self.active: list[Submission] = []  # not closed
        self.batch = self._new_batch()
        self.step_s = 0.05  # running mean of one loop iteration, for "try again in N s"
        self.min_left = 0  # fewest tokens any running request has left (updated each step)
        self.stats = {"steps": 0, "rows": 0, "joins": 0, "prefill_s": 0.0, "sample_s": 0.0, "forward_s": 0.0}
        self._stop = False
        self._dirty = False  # decoded since the heap was last trimmed (see _wait_for_work)
        self.trims = 0  # times the loop went idle and returned freed memory to the OS
        self.thread = threading.Thread(target=self._loop, name=LOOP_THREAD, daemon=True)
        self.thread.start()
        atexit.register(self.close)  # stop the loop before the interpreter (and OpenMP) shut down

    @property
    def running(self) -> bool:
        return self.thread.is_alive() and not self._stop

    def close(self) -> None:
        with self.cond:
            self._stop = True
            self.cond.notify_all()
        self.thread.join(timeout=10)

    def _new_batch(self) -> RunningBatch:
        self.adapter_version = self.runner.adapter_version
        return RunningBatch(self.runner.new_decoder(widths=self.config.kv_widths))

    # --- submitting (any thread) --------------------------------------------------------------------
    def submit(self, requests: Sequence[Request], should_stop: Callable[[], bool] | None = None, client: str | None = None,
               deadline: float | None = None) -> Submission:
        """Queue requests to decode together; raises the runner's refusal when the queue or the client's share is full."""
        for req in requests:
            self.runner.check_adapter(req.adapter)
        c, refusal = self.config, self.runner.refusal
        with self.cond:
            if client is not None and sum(s.client == client for s in self.active) >= c.max_per_client:
                raise refusal(f"too many requests from this client at once (at most {c.max_per_client}); "
                                 "wait for one to finish")
            queued = sum(1 for s in self.waiting if not s.admitted)
            if queued >= c.max_waiting:
                raise refusal(f"busy: {queued} requests are waiting; try again in {self._retry_s()} s")
            sub = Submission(requests, should_stop, client, deadline, bulk=len(requests) > c.bulk_threshold)
            self.active.append(sub)
            self.waiting.append(sub)
            self.cond.notify_all()
        return sub

    def _retry_s(self) -> int:
        """Seconds until rows are likely to free up: the fewest tokens any running request has left, × step time."""
        return max(1, math.ceil(self.min_left * self.step_s))

    def stream(self, requests: Sequence[Request], should_stop: Callable[[], bool] = lambda: False, client: str | None = None,
               deadline: float | None = None) -> Iterator[list[Stream]]:
        """Submit, then yield copies of the submission's streams after each step it took part in (coalesced
        when the reader is slower than the loop) until every request is done or the submission stops."""
        sub = self.submit(requests, should_stop, client, deadline)
        release_openmp_pool()  # this thread only waits now: its OpenMP workers must not compete with the loop's
        seen = 0
        try:
            while True:
                with self.cond:
                    while sub.version == seen and not sub.closed:
                        self.cond.wait(timeout=1.0)
                    snapshot, seen, closed, error = [s.copy() for s in sub.streams], sub.version, sub.closed, sub.error
                if error is not None:
                    raise error
                if seen:
                    yield snapshot
                if closed:
                    return
        finally:
            sub.cancel()

    # --- the decode loop (one thread) ----------------------------------------------------------------
    def _loop(self) -> None:
        torch.set_num_threads(self.threads)  # the creating thread's setting (a new thread would get one per core)
        while True:
            with self.cond:
                quiet = self._wait_for_work()
                if self._stop:
                    return
                admit = None if quiet else self._plan()
            if admit is None:
                self._went_idle()  # outside the lock: a submission arriving now is not held up by the trim
                continue
            tick = time.perf_counter()
            if admit:
                self._join(admit)
            self.stats["prefill_s"] += time.perf_counter() - tick
            self.stats["joins"] += len(admit)
            if not self.batch.members:
                continue
            self._dirty = True
            try:
                self._step()
            except Exception as err:  # noqa: BLE001 - fail the running submissions, keep serving
                self._fail_all(err)
            self.step_s = 0.9 * self.step_s + 0.1 * (time.perf_counter() - tick)

    def _wait_for_work(self) -> bool:
        """Wait (under the lock) until there is work or a stop; True instead when the loop, having decoded since
        the last trim, has now had nothing to do for `idle_trim_s` (time to give memory back)."""
        while not self._stop and not self.batch.members and not self.waiting:
            if not self._dirty:
                self.cond.wait()
            elif not self.cond.wait(timeout=getattr(self.config, "idle_trim_s", 0.5)) and not (
                    self.batch.members or self.waiting or self._stop):
                return True
        return False

    def _went_idle(self) -> None:
        """The idle hook: the KV cache and activations of the requests that left are freed; glibc keeps their pages
        until malloc_trim returns them (playground/runtime/memory.py), which is what brings RSS down after a crowd."""
        self._dirty = False
        self.trims += 1
        memory.release_memory()

    def _plan(self) -> list[tuple[Submission, list[int]]]:
        """Which waiting requests join now (under the lock): interactive first, then bulk chunks, within the row caps."""
        c, plan = self.config, []
        for sub in [s for s in self.waiting if s.stopping()]:
            self._close(sub)
        if self.runner.adapter_version != self.adapter_version:  # adapters changed: drain, then rebuild the decoder
            if self.batch.members:
                return plan
            self.batch = self._new_batch()
        free = c.max_rows - self.batch.rows
        bulk = sum(len(m.rows) for m in self.batch.members if m.owner.bulk)
        kv = self.batch.decoder.kv
        budget = max(c.max_kv_mb * 2**20, kv.nbytes)  # growing past the budget waits; what is there stays
        kv.max_bytes = budget
        bulk_budget = budget - c.chat_kv_reserve_mb * 2**20  # sweeps leave this much of the cache to chat turns
        extra: dict[int, tuple[int, int]] = {}  # rows and longest reach planned per KV pool at this boundary
        prefill = 0  # prompt tokens planned at this boundary
        for sub in sorted(self.waiting, key=lambda s: s.bulk):  # stable: arrival order within each class
            while sub.pending:
                take = list(sub.pending)[: c.bulk_chunk] if sub.bulk else list(sub.pending)
                need, tokens, trial = sub.rows(take), sub.prefill_tokens(take), sub.kv_rows(take, kv, extra)
                fits = (need <= free and kv.bytes_for(trial) <= (bulk_budget if sub.bulk else budget)
                        and (not sub.bulk or bulk + need <= c.bulk_rows) and (not plan or prefill + tokens <= c.prefill_tokens))
                if not fits and (self.batch.members or plan):
                    break
                for _ in take:
                    sub.pending.popleft()
                if plan and plan[-1][0] is sub:  # one join per submission: its identical prompts prefill once
                    plan[-1][1].extend(take)
                else:
                    plan.append((sub, take))
                free, extra, prefill = free - need, trial, prefill + tokens
                if sub.bulk:
                    bulk += need
        for sub, _ in plan:
            if not sub.pending and sub in self.waiting:
                self.waiting.remove(sub)
        return plan

    def _join(self, plan: list[tuple[Submission, list[int]]]) -> None:
        """Prefill the planned requests in one forward; when that fails, each submission alone, so only the one
        that cannot join fails (e.g. a prompt the model cannot take)."""
        groups = [([sub.requests[i] for i in idx], [sub.streams[i] for i in idx], sub, sub.start) for sub, idx in plan]
        try:
            joined = self.runner.forward(lambda: self.batch.join_groups(groups))
        except Exception as err:  # noqa: BLE001 - a failed join leaves the running rows as they were
            if len(plan) > 1:
                for entry in plan:
                    self._join([entry])
                return
            with self.cond:
                plan[0][0].error = err
                self._close(plan[0][0])
            return
        for (sub, _), members in zip(plan, joined):
            sub.admitted += len(members)

    def _step(self) -> None:
        """sample → publish → leave → advance (see the module docstring)."""
        t0 = time.perf_counter()
        with self.cond:
            self.batch.sample(self.runner.stop_ids)
            owners = {id(m.owner): m.owner for m in self.batch.members}.values()
            stopped = set()
            for sub in owners:
                sub.version += 1
                if sub.closed or sub.stopping():
                    stopped.add(id(sub))
            leaving = [m for m in self.batch.members if m.stream.done or id(m.owner) in stopped]
            still = {id(m.owner) for m in self.batch.members if not (m.stream.done or id(m.owner) in stopped)}
            for sub in owners:
                if id(sub) in stopped or (id(sub) not in still and not sub.pending):
                    self._close(sub)
            self.min_left = min((m.left for m in self.batch.members if id(m.owner) in still), default=0)
            self.cond.notify_all()
        t1 = time.perf_counter()
        self.stats["steps"] += 1
        self.stats["rows"] += self.batch.rows
        self.batch.leave(leaving)
        if self.batch.members:
            self.runner.forward(self.batch.advance)
        self.stats["sample_s"] += t1 - t0
        self.stats["forward_s"] += time.perf_counter() - t1

    def _close(self, sub: Submission) -> None:
        """Under the lock: the submission ends (running members of a closed submission leave at the next step)."""
        sub.closed = True
        sub.pending.clear()
        if sub in self.waiting:
            self.waiting.remove(sub)
        if sub in self.active:
            self.active.remove(sub)
        self.cond.notify_all()

    def _fail_all(self, err: Exception) -> None:
        """A step failed: every running and waiting submission gets the error; the loop starts afresh."""
        with self.cond:
            for sub in list(self.active):
                sub.error = err
                self._close(sub)
            self.batch = self._new_batch()
