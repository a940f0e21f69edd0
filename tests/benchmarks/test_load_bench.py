"""Pure helpers of benchmarks/load.py: percentiles, failure kinds, capacity, sweep sizes, targets, JSON history."""
from __future__ import annotations

from dataclasses import replace

from benchmarks import load
from playground.settings.request import LIMITS, SWEEP
from playground.settings.server import SERVE, job_estimate
from playground.settings.validation import InputError, check_job_cost


def test_pct_nearest_rank():
    assert load.pct([], 50) is None
    assert load.pct([3.0], 99) == 3.0
    values = [float(v) for v in range(1, 101)]
    assert load.pct(values, 50) == 51.0  # round(0.5 * 99) = 50 → the 51st value
    assert load.pct(values, 99) == 99.0
    assert load.pct(list(reversed(values)), 0) == 1.0


def test_classify_failures():
    assert load.classify("QueueError: Queue is full! Please try again.") == "queue_full"
    assert load.classify("AppError: busy: 32 requests are waiting; try again in 2 s") == "busy"
    assert load.classify("too many requests from this client at once (at most 4); wait") == "client_cap"
    assert load.classify("no answer within 150 s (timeout)") == "timeout"
    assert load.classify("AppError: unknown adapter 'x'") == "error"


def test_capacity_and_allowed_rejections():
    cap = SERVE.lm_concurrency + SERVE.queue_max_size
    assert load.capacity() == cap
    assert load.allowed_rejections(cap, 100) == 0
    assert load.allowed_rejections(cap + 12, 100) == 12
    assert load.allowed_rejections(cap + 12, cap + 2) == 2  # never more than the requests beyond capacity
    small = replace(SERVE, lm_concurrency=1, queue_max_size=2)
    assert load.allowed_rejections(8, 8, small) == 5


def test_maximal_sweep_is_refused_by_the_servers_cost_check():
    m = load.maximal_sweep("upbeat-b0.1")
    assert m["rows"] == LIMITS.max_sweep_prompts * LIMITS.max_sweep_rows
    assert not m["accepted_by_estimate"]
    prompts = m["inputs"][2].split("\n")
    assert len(prompts) == LIMITS.max_sweep_prompts and all(len(p) == LIMITS.max_prompt_chars for p in prompts)
    assert len(set(prompts)) == len(prompts)
    try:
        check_job_cost(m["rows"], m["prompt_chars"], m["max_new_tokens"])
    except InputError as err:
        assert "min" in str(err)
    else:
        raise AssertionError("the maximal sweep passed the cost check")


def test_largest_accepted_sweep_passes_and_is_maximal():
    a = load.largest_accepted_sweep("upbeat-b0.1")
    check_job_cost(a["rows"], a["prompt_chars"], a["max_new_tokens"])  # accepted (raises otherwise)
    per_prompt = a["rows"] // a["prompts"]
    assert per_prompt == LIMITS.max_sweep_rows
    # one more prompt, one more token, or one more character is refused (unless already at its limit)
    more = [(a["rows"] + per_prompt, a["prompt_chars"], a["max_new_tokens"], a["prompts"] < LIMITS.max_sweep_prompts),
            (a["rows"], a["prompt_chars"], a["max_new_tokens"] + 1, a["max_new_tokens"] < LIMITS.max_new_tokens),
            (a["rows"], a["prompt_chars"] + 1, a["max_new_tokens"], a["prompt_chars"] < LIMITS.max_prompt_chars)]
    for rows, chars, tokens, applies in more:
        if applies:
            seconds, kv = job_estimate(rows, chars, tokens)
            assert seconds > LIMITS.max_job_seconds or kv > LIMITS.max_job_kv_bytes
    lams = a["inputs"][5].split(",")
    assert len(lams) <= LIMITS.max_sweep_values and len(set(lams)) == len(lams)


def test_sweep_inputs_match_the_tradeoff_tab():
    from ui.tradeoff_tab import SOURCES

    assert tuple(SOURCES) == load.SWEEP_SOURCES
    d = load.default_sweep("upbeat-b0.1")
    assert d["inputs"][1] == SOURCES[0]
    assert d["inputs"][5] == ",".join(f"{v:g}" for v in SWEEP.lambdas)
    assert d["rows"] == SWEEP.prompt_count * len(SWEEP.lambdas) * len(SWEEP.temperatures) * SWEEP.samples
    assert len(d["inputs"]) == 12


def test_merge_previous_keeps_one_level():
    assert load.merge_previous(None, {"a": 1}) == {"a": 1}
    old = {"levels": [1], "previous": {"levels": [0]}}
    merged = load.merge_previous(old, {"levels": [2]})
    assert merged == {"levels": [2], "previous": {"levels": [1]}}


def test_targets():
    lv8 = {"clients": 8, "requests": 32, "turns_per_s": 4.2, "ttft_p50_s": 0.6, "ttft_p99_s": 1.2, "errors": 0}  # issue 23's bounds
    lv32 = {"clients": 32, "requests": 32, "errors": 0, "rejections": 12}
    got = {t["target"]: t["met"] for t in load.issue16_targets([lv8, lv32], {"chat_ttft_p95_s": None})}
    assert got["8 clients: turns/s"] is True
    assert got["8 clients: first token p50"] is False
    assert got["8 clients: first token p99"] is True
    assert got["8 clients: errors"] is True
    assert got["32 clients: errors"] is True
    rejections = next(k for k in got if k.startswith("32 clients: rejections"))
    assert got[rejections] is (12 <= load.allowed_rejections(32, 32))
    assert got["chat during the default sweep: first token p95"] is None


def test_proc_parsing():
    import os

    info = load.read_proc(os.getpid())
    assert info["rss_mb"] > 0 and info["hwm_mb"] >= info["rss_mb"] * 0.5 and info["cpu_s"] >= 0
    # a comm with spaces and parentheses does not shift the fields
    assert load._cpu_s("1 (a (b) c) S " + " ".join(["0"] * 10) + " 100 50 0 0") == 150 / os.sysconf("SC_CLK_TCK")


def test_summarise_window():
    def stats(steps, rows, joins, prefill, sample, forward):
        return {"steps": steps, "rows": rows, "joins": joins, "prefill_s": prefill, "sample_s": sample, "forward_s": forward}

    samples = [{"t": 0.0, "rss_mb": 100.0, "cpu_s": 0.0, "loop_cpu_s": 0.0,
                "sched": {"scheduler": True, "active": 1, "rows": 5, "stats": stats(0, 0, 0, 0.0, 0.0, 0.0)}},
               {"t": 2.0, "rss_mb": 150.0, "cpu_s": 3.0, "loop_cpu_s": 2.0,
                "sched": {"scheduler": True, "active": 3, "rows": 15, "stats": stats(10, 100, 2, 0.2, 0.1, 1.0)}}]
    w = load.summarise_window(samples)
    assert w["peak_rss_mb"] == 150.0 and w["server_cores"] == 1.5 and w["loop_cores"] == 1.0 and w["other_cores"] == 0.5
    assert w["loop"]["steps"] == 10 and w["loop"]["mean_rows"] == 10 and abs(w["loop"]["step_ms"] - 130) < 1e-9
    assert w["max_active"] == 3 and load.summarise_window(samples[:1]) == {}


def test_has_text():
    empty = ([{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}],) * 3
    some = ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "Hi"}], [], [])
    assert not load._has_text([])
    assert not load._has_text([empty])
    assert load._has_text([empty, some])
