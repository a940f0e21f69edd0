"""The OpenAI-compatible /v1 routes, driven by the official `openai` client against the launched app (tiny model).

What the API promises: the answer of a model at a setting is the UI's answer at that setting (the realigned column,
the base column, the chat tab's later turns), streamed or not; errors are OpenAI-shaped and name the parameter;
the bounded queue answers 429 with Retry-After; a closed stream frees its scheduler rows.
"""
from __future__ import annotations

import time

import httpx
import openai
import pytest

from app import build_demo, launch_kwargs
from playground.api.config import ApiSettings
from tests.test_app import launch, slow_engine

PROMPT = "Tell me about cats."
KNOBS = dict(temperature=0.7, top_p=0.95, max_tokens=24, seed=3)


def launch_api(pg, settings: ApiSettings | None = None):
    """The app with the production launch options (and, given `settings`, /v1 with other limits): (demo, url)."""
    from playground.api import openai_routes

    demo = build_demo(pg)
    kwargs = launch_kwargs(demo)
    if settings is not None:
        kwargs["app_kwargs"]["routes"] = openai_routes(pg, settings)
    return demo, launch(demo, kwargs)


@pytest.fixture(scope="module")
def served(tiny_playground):
    demo, url = launch_api(tiny_playground)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def oai(served):
    return openai.OpenAI(base_url=served + "v1", api_key="unused", max_retries=0, timeout=60)


def realigned(pg, prompt=PROMPT, adapter="a", history=None, column="realigned", **knobs) -> str:
    """The UI's answer for these settings (what the chat tab and `generate --json` show)."""
    k = {"temperature": KNOBS["temperature"], "top_p": KNOBS["top_p"], "max_new_tokens": KNOBS["max_tokens"],
         "seed": KNOBS["seed"], **knobs}
    if "kl_strength" not in k and "lam" not in k:
        k["lam"] = 0.5
    turn = pg.turn(prompt, adapter, **k)
    request = pg.requests(turn, history)[column]  # the column's request, as the chat tab and the CLI decode it
    for streams in pg.stream([request]):
        pass
    return pg.text(streams[0].tokens)


def ask(oai, model="a", prompt=PROMPT, **over):
    return oai.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], **{**KNOBS, **over})


def streamed(oai, model="a", prompt=PROMPT, **over) -> tuple[str, list]:
    chunks = list(oai.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], stream=True,
                                              **{**KNOBS, **over}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def error_of(call) -> dict:
    with pytest.raises(openai.APIStatusError) as info:
        call()
    body = info.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in info.value.response.text
    return {"status": info.value.status_code, **body["error"], "headers": info.value.response.headers}


# --- models ----------------------------------------------------------------------------------------------
def test_models_are_base_and_every_adapter(oai, tiny_playground):
    ids = [m.id for m in oai.models.list().data]
    assert ids == ["base", *sorted(tiny_playground.adapters)]
    card = oai.models.retrieve("a")
    assert card.id == "a" and card.model_extra["playground"]["beta_train"] == pytest.approx(0.1)


# --- the same answer as the UI -----------------------------------------------------------------------------
def test_chat_answer_is_the_realigned_column(oai, tiny_playground):
    r = ask(oai, extra_body={"lambda": 0.5})
    assert r.choices[0].message.content == realigned(tiny_playground, lam=0.5)
    assert r.object == "chat.completion" and r.choices[0].finish_reason in ("stop", "length")


def test_kl_strength_is_beta_and_the_default_is_the_chat_tabs(oai, tiny_playground):
    by_beta = ask(oai, extra_body={"kl_strength": 0.05})  # β_train 0.1 / β 0.05 = λ 2
    assert by_beta.choices[0].message.content == realigned(tiny_playground, kl_strength=0.05)
    assert by_beta.model_extra["playground"]["lambda"] == pytest.approx(2.0)
    default = ask(oai)  # neither knob: the chat tab's starting point, β = 2·β_train (λ = 0.5)
    assert default.model_extra["playground"]["lambda"] == pytest.approx(0.5)
    assert default.choices[0].message.content == realigned(tiny_playground, lam=0.5)


def test_streamed_answer_adds_up_to_the_same_text(oai, tiny_playground):
    text, chunks = streamed(oai, extra_body={"lambda": 1.5}, max_tokens=40)
    assert text == realigned(tiny_playground, lam=1.5, max_new_tokens=40)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_base_model_is_the_base_column(oai, tiny_playground):
    r = ask(oai, model="base")
    assert r.choices[0].message.content == realigned(tiny_playground, column="base")
    assert r.model_extra["playground"]["adapter"] is None


def test_weights_mode_and_greedy(oai, tiny_playground):
    r = ask(oai, temperature=0, extra_body={"lambda": 2.0, "mode": "weights"})
    assert r.choices[0].message.content == realigned(tiny_playground, lam=2.0, mode="weights", temperature=0)


def test_later_turns_continue_the_conversation_like_the_chat_tab(oai, tiny_playground):
    from playground.chat.conversation import Conversation, run_turn

    knobs = dict(adapter="a", kl_strength=0.2, mode="logits", temperature=0.7, top_p=0.95, max_new_tokens=16, seed=1)
    conv = Conversation()
    for prompt in ("Tell me about cats.", "And dogs?"):
        for conv, _ in run_turn(tiny_playground, conv, prompt, knobs):
            pass
    first, second = (row.cells["realigned"].text for row in conv.rows)
    r = oai.chat.completions.create(
        model="a", temperature=0.7, top_p=0.95, max_tokens=16, seed=1, extra_body={"kl_strength": 0.2},
        messages=[{"role": "user", "content": "Tell me about cats."}, {"role": "assistant", "content": first},
                  {"role": "user", "content": [{"type": "text", "text": "And dogs?"}]}])
    assert r.choices[0].message.content == second


def test_n_choices_take_the_next_seeds(oai, tiny_playground):
    r = ask(oai, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    for i, c in enumerate(r.choices):
        assert c.message.content == realigned(tiny_playground, seed=KNOBS["seed"] + i)
    assert [c["seed"] for c in r.model_extra["playground"]["choices"]] == [3, 4, 5]


def test_completions_take_the_prompt_as_one_user_turn(oai, tiny_playground):
    r = oai.completions.create(model="a", prompt=PROMPT, extra_body={"lambda": 0.5}, **KNOBS)
    assert r.choices[0].text == realigned(tiny_playground, lam=0.5)
    parts = list(oai.completions.create(model="a", prompt=PROMPT, stream=True, extra_body={"lambda": 0.5}, **KNOBS))
    assert "".join(p.choices[0].text for p in parts if p.choices) == r.choices[0].text


def test_the_chat_tab_over_gradio_gives_the_same_text(oai, served):
    from gradio_client import Client

    ui = Client(served, verbose=False).predict("Tell me about cats.", "a", 0.05, "logits", 0.7, 0.95, 24, 3,
                                                api_name="/chat")
    column = ui[1][1]["content"].split("\n\n<sub>")[0]
    api = ask(oai, extra_body={"kl_strength": 0.05})
    assert api.choices[0].message.content == column


# --- usage, readouts, stop sequences, log-probabilities ---------------------------------------------------------
def test_usage_counts_tokens_and_the_playground_object_reproduces(oai, tiny_playground):
    r = ask(oai, extra_body={"kl_strength": 0.2})
    ids = tiny_playground.encode(PROMPT)
    assert r.usage.prompt_tokens == len(ids)
    ext = r.model_extra["playground"]
    assert r.usage.completion_tokens == ext["choices"][0]["tokens"] > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert ext["lambda"] == pytest.approx(0.5) and ext["kl_strength"] == pytest.approx(0.2)
    assert ext["beta_train"] == pytest.approx(0.1) and ext["mode"] == "logits" and ext["seed"] == 3
    assert len(ext["adapter_sha256"]) == 64 and ext["kl_to_base"] > 0 and ext["entropy"] > 0
    turn = tiny_playground.turn(PROMPT, "a", kl_strength=0.2, temperature=0.7, top_p=0.95, max_new_tokens=24, seed=3)
    for streams in tiny_playground.stream([tiny_playground.requests(turn)["realigned"]]):
        pass
    ui = tiny_playground.answer(streams[0], "realigned", turn)
    assert ext["kl_to_base"] == pytest.approx(ui.kl_to_base) and ext["entropy"] == pytest.approx(ui.entropy)


def test_stream_usage_arrives_when_asked(oai):
    _, chunks = streamed(oai, stream_options={"include_usage": True})
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert any("playground" in (c.model_extra or {}) for c in chunks)


def test_a_stop_sequence_cuts_the_answer_before_it(oai, tiny_playground):
    full = realigned(tiny_playground, lam=0.5, max_new_tokens=40)
    stop = full[len(full) // 2: len(full) // 2 + 3]
    assert stop.strip(), f"pick a visible stop sequence from {full!r}"
    r = ask(oai, max_tokens=40, stop=[stop], extra_body={"lambda": 0.5})
    assert r.choices[0].message.content == full[:full.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    text, _ = streamed(oai, max_tokens=40, stop=stop, extra_body={"lambda": 0.5})
    assert text == full[:full.index(stop)]


def test_logprobs_come_from_the_realigned_distribution(oai, tiny_playground):
    import torch

    r = ask(oai, temperature=0, logprobs=True, top_logprobs=3, max_tokens=8, extra_body={"lambda": 2.0})
    entries = r.choices[0].logprobs.content
    assert 0 < len(entries) <= r.usage.completion_tokens
    for e in entries:
        assert len(e.top_logprobs) == 3 and e.top_logprobs[0].logprob == pytest.approx(e.logprob)  # greedy: the top one
        assert e.logprob <= 0
    # The first token's log-probability is log softmax(ℓ_λ) of the realigned logits (teacher-forced), λ = 2.
    d = tiny_playground.turn(PROMPT, "a", lam=2.0, temperature=0, max_new_tokens=8, seed=3).decode
    logits = tiny_playground.teacher_force(tiny_playground.encode(PROMPT), "a", d, [])[0]
    assert entries[0].logprob == pytest.approx(float(torch.log_softmax(logits, -1).max()), abs=1e-4)
    assert b"".join(bytes(e.bytes) for e in entries).decode("utf-8", "replace") == r.choices[0].message.content
    # Streamed, the same entries arrive with the text they belong to.
    _, chunks = streamed(oai, temperature=0, logprobs=True, top_logprobs=3, max_tokens=8, extra_body={"lambda": 2.0})
    got = [e.logprob for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert got == pytest.approx([e.logprob for e in entries])


def test_sampled_logprobs_leave_the_text_unchanged(oai, tiny_playground):
    r = ask(oai, logprobs=True, top_logprobs=2, extra_body={"lambda": 0.5})
    assert r.choices[0].message.content == realigned(tiny_playground, lam=0.5)
    assert all(-9999.0 <= e.logprob <= 0 for e in r.choices[0].logprobs.content)


# --- errors the OpenAI way --------------------------------------------------------------------------------
@pytest.mark.parametrize("over, param, words", [
    (dict(temperature=-0.5), "temperature", "[0, 2]; got -0.5"),
    (dict(top_p=0), "top_p", "(0, 1]"),
    (dict(max_tokens=100000), "max_tokens", "[1, 256]; got 100000"),
    (dict(extra_body={"lambda": 0.5, "kl_strength": 0.2}), "kl_strength", "exactly one"),
    (dict(extra_body={"lambda": 99}), "lambda", "[0, 8]; got 99"),
    (dict(extra_body={"kl_strength": 0.001}), "kl_strength", "[0.01, 100]"),
    (dict(extra_body={"mode": "both"}), "mode", "logits, weights"),
    (dict(extra_body={"lamda": 0.5}), "lamda", "unknown parameter"),
    (dict(n=50), "n", "[1, 8]; got 50"),
    (dict(seed=-1), "seed", "got -1"),
    (dict(top_logprobs=3), "top_logprobs", "logprobs: true"),
    (dict(frequency_penalty=0.5), "frequency_penalty", "not supported"),
    (dict(tools=[{"type": "function", "function": {"name": "f"}}]), "tools", "not supported"),
])
def test_bad_values_are_400_naming_the_parameter(oai, over, param, words):
    e = error_of(lambda: ask(oai, **over))
    assert (e["status"], e["param"], e["type"]) == (400, param, "invalid_request_error")
    assert words in e["message"]


def test_base_takes_no_realignment_knob(oai):
    e = error_of(lambda: ask(oai, model="base", extra_body={"lambda": 1}))
    assert (e["status"], e["param"]) == (400, "lambda")


def test_unknown_model_is_404_model_not_found(oai):
    e = error_of(lambda: ask(oai, model="gpt-4o"))
    assert (e["status"], e["code"], e["param"]) == (404, "model_not_found", "model")
    assert "available: base, a, b" in e["message"]


@pytest.mark.parametrize("messages, param", [
    ([{"role": "assistant", "content": "Hi"}], "messages"),
    ([{"role": "user", "content": "  "}], "messages[0].content"),
    ([{"role": "tool", "content": "x"}], "messages[0].role"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "messages[0].content[0]"),
    ([{"role": "user", "content": "x" * 2500}], "messages[0].content"),
    ([{"role": "user", "content": "cat " * 1900}], "messages[0].content"),
])
def test_bad_messages_are_400_naming_the_message(oai, messages, param):
    e = error_of(lambda: oai.chat.completions.create(model="a", messages=messages))
    assert (e["status"], e["param"]) == (400, param)


def test_too_many_prompt_tokens_is_400(oai):
    history = [{"role": "user", "content": "cat " * 900}, {"role": "assistant", "content": "dog " * 900}]
    e = error_of(lambda: oai.chat.completions.create(model="a", messages=[*history, {"role": "user", "content": "Hi"}]))
    assert (e["status"], e["param"]) == (400, "messages") and "the limit is 1024" in e["message"]


def test_malformed_bodies_are_400_not_stack_traces(served):
    for body in (b"{not json", b"[1, 2]", b'"text"'):
        r = httpx.post(served + "v1/chat/completions", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.get(served + "v1/embeddings")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"


def test_api_key_when_set(served, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_API_KEY", "s3cret")
    wrong = openai.OpenAI(base_url=served + "v1", api_key="wrong", max_retries=0)
    e = error_of(lambda: wrong.models.list())
    assert (e["status"], e["code"]) == (401, "invalid_api_key")
    none = httpx.post(served + "v1/chat/completions", json={"model": "a", "messages": [{"role": "user", "content": "Hi"}]})
    assert none.status_code == 401 and "Bearer" in none.json()["error"]["message"]
    assert none.headers["www-authenticate"] == "Bearer"
    good = openai.OpenAI(base_url=served + "v1", api_key="s3cret", max_retries=0)
    assert good.models.list().data[0].id == "base"


# --- bounds: the queue, the deadline, a closed stream ---------------------------------------------------------
@pytest.fixture()
def small_api(tiny_playground, monkeypatch):
    """/v1 with 1 decoding slot, no waiting room, 2 requests per client and a 1 s deadline; forwards slowed to 20 ms."""
    count = slow_engine(tiny_playground.engine, monkeypatch)
    demo, url = launch_api(tiny_playground, ApiSettings(max_active=1, max_waiting=0, per_client=2, timeout_s=1.0))
    yield openai.OpenAI(base_url=url + "v1", api_key="unused", max_retries=0, timeout=60), count
    demo.close()


def scheduler_idle(pg) -> bool:
    s = pg.engine.scheduler
    return not s.active and s.batch.rows == 0


def wait_until(check, limit_s: float = 10.0) -> bool:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_full_queue_is_429_with_retry_after(small_api, tiny_playground):
    oai, _ = small_api
    with oai.chat.completions.create(model="a", messages=[{"role": "user", "content": PROMPT}], stream=True,
                                     max_tokens=256, temperature=0.7) as holding:
        next(iter(holding))  # decoding: the one slot is taken
        e = error_of(lambda: ask(oai))
        assert (e["status"], e["code"], e["type"]) == (429, "rate_limit_exceeded", "rate_limit_error")
        assert int(e["headers"]["retry-after"]) >= 1 and "busy" in e["message"]
    assert wait_until(lambda: scheduler_idle(tiny_playground))
    assert ask(oai, max_tokens=4).choices[0].message.content is not None  # the slot is free again


def test_the_deadline_ends_an_answer_with_what_it_has(small_api):
    oai, _ = small_api
    r = ask(oai, max_tokens=256)  # 256 steps × ≥ 20 ms > the 1 s deadline
    assert r.choices[0].finish_reason == "length"
    assert r.model_extra["playground"]["choices"][0]["timed_out"] is True
    assert 0 < r.usage.completion_tokens < 256


def test_a_closed_stream_frees_its_rows(served, tiny_playground, monkeypatch):
    count = slow_engine(tiny_playground.engine, monkeypatch)
    oai = openai.OpenAI(base_url=served + "v1", api_key="unused", max_retries=0)
    stream = oai.chat.completions.create(model="a", messages=[{"role": "user", "content": PROMPT}], stream=True,
                                         max_tokens=256, temperature=0.7)
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    assert tiny_playground.engine.scheduler.batch.rows == 2  # base + tuned row of the realigned request
    closed = time.monotonic()
    stream.close()
    assert wait_until(lambda: scheduler_idle(tiny_playground), limit_s=5.0)  # a generous bound; the figure is printed
    print(f"rows freed {time.monotonic() - closed:.3f} s after the client closed the stream")
    steps = count["n"]
    assert steps < 256, "the closed stream decoded to the end"
    time.sleep(0.2)
    assert count["n"] == steps  # nothing decodes for it any more


def test_one_client_holds_at_most_its_share(tiny_playground, monkeypatch):
    slow_engine(tiny_playground.engine, monkeypatch)
    demo, url = launch_api(tiny_playground, ApiSettings(max_active=4, max_waiting=4, per_client=1))
    try:
        oai = openai.OpenAI(base_url=url + "v1", api_key="unused", max_retries=0)
        with oai.chat.completions.create(model="a", messages=[{"role": "user", "content": PROMPT}], stream=True,
                                         max_tokens=256) as holding:
            next(iter(holding))
            e = error_of(lambda: ask(oai))
            assert (e["status"], e["code"]) == (429, "rate_limit_exceeded") and "this client" in e["message"]
            other = httpx.post(url + "v1/chat/completions", headers={"x-forwarded-for": "203.0.113.7"},
                               json={"model": "a", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 2})
            assert other.status_code == 200  # another client still gets in
    finally:
        demo.close()


def test_logprobs_do_not_depend_on_the_batch(tiny_playground):
    from dataclasses import replace

    d = tiny_playground.turn(PROMPT, "a", lam=1.5, temperature=0.8, top_p=0.9, max_new_tokens=12, seed=7).decode
    ids = tiny_playground.encode(PROMPT)
    req = replace(tiny_playground.request(ids, "a", d), logprobs=4)
    others = [tiny_playground.request(tiny_playground.encode("And dogs?"), "b", replace(d, seed=s)) for s in range(3)]
    alone = tiny_playground.engine.generate([req])[0]
    beside = tiny_playground.engine.generate([*others, req])[-1]
    assert beside.tokens == alone.tokens and beside.logprobs == alone.logprobs
    assert len(alone.logprobs) == len(alone.tokens)
    assert tiny_playground.engine.generate([replace(req, logprobs=None)])[0].tokens == alone.tokens


def test_requests_while_the_model_loads_wait_for_it(tiny_playground):
    import threading

    from playground.runtime.startup import LazyPlayground

    lazy = LazyPlayground(dict(tiny_playground.adapters))
    demo, url = launch_api(lazy)
    try:
        oai = openai.OpenAI(base_url=url + "v1", api_key="unused", max_retries=0, timeout=60)
        assert [m.id for m in oai.models.list().data] == ["base", "a", "b"]  # known before the model is there
        out: dict = {}
        asking = threading.Thread(target=lambda: out.update(r=ask(oai, extra_body={"lambda": 0.5})))
        asking.start()
        lazy.load(lambda: tiny_playground)
        asking.join(60)
        assert out["r"].choices[0].message.content == realigned(tiny_playground, lam=0.5)
    finally:
        demo.close()


def test_knobs_in_the_model_id_for_tools_that_only_pick_a_model(oai, tiny_playground):
    r = oai.chat.completions.create(model="a@lambda=1.5,mode=weights", messages=[{"role": "user", "content": PROMPT}],
                                    **KNOBS)
    assert r.model == "a@lambda=1.5,mode=weights"
    assert r.choices[0].message.content == realigned(tiny_playground, lam=1.5, mode="weights")
    assert oai.models.retrieve("a@kl_strength=0.05").id == "a@kl_strength=0.05"
    e = error_of(lambda: ask(oai, model="a@lambda=1", extra_body={"lambda": 2}))
    assert (e["status"], e["param"]) == (400, "lambda")
    e = error_of(lambda: ask(oai, model="a@temperature=1"))
    assert (e["status"], e["param"]) == (400, "model")


def test_a_busy_scheduler_is_429_streamed_or_not(oai, tiny_playground, monkeypatch):
    from dataclasses import replace

    sched = tiny_playground.engine.scheduler
    monkeypatch.setattr(sched, "config", replace(sched.config, max_waiting=0))  # every submission is refused
    for stream in (False, True):
        e = error_of(lambda: list(ask(oai, stream=True)) if stream else ask(oai))
        assert (e["status"], e["code"]) == (429, "rate_limit_exceeded") and "busy" in e["message"]
        assert int(e["headers"]["retry-after"]) >= 1


def test_streamed_choices_each_end_once(oai, tiny_playground):
    chunks = list(oai.chat.completions.create(model="a", messages=[{"role": "user", "content": PROMPT}], n=2,
                                              stream=True, **KNOBS))
    for i in range(2):
        text = "".join(c.delta.content or "" for ch in chunks for c in ch.choices if c.index == i)
        assert text == realigned(tiny_playground, seed=KNOBS["seed"] + i)
        assert sum(1 for ch in chunks for c in ch.choices if c.index == i and c.finish_reason) == 1
    assert [p["index"] for p in chunks[-1].model_extra["playground"]["choices"]] == [0, 1]


def test_completions_logprobs_in_the_legacy_shape(oai):
    r = oai.completions.create(model="a", prompt=PROMPT, logprobs=2, **{**KNOBS, "temperature": 0})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) > 0
    assert all(len(top) <= 2 for top in lp.top_logprobs) and lp.text_offset[0] == 0
