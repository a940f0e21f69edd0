"""Drive the launched app as a real client would (gradio_client), on the tiny model."""
from __future__ import annotations

import socket
import time

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(demo, kwargs: dict | None = None) -> str:
    """A built app launched on a free loopback port with the production launch options (or `kwargs`, made from
    `app.launch_kwargs(demo)` and changed by the caller); its URL."""
    from app import launch_kwargs

    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **(kwargs if kwargs is not None else launch_kwargs(demo)))
    return f"http://127.0.0.1:{port}/"


def serve(pg) -> tuple:
    """`app.build_demo(pg)`, launched (see `launch`): (demo, url). Close the demo when done."""
    from app import build_demo

    demo = build_demo(pg)
    return demo, launch(demo)


@pytest.fixture(scope="module")
def app_url(tiny_playground):
    demo, url = serve(tiny_playground)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


GOOD = dict(message="Tell me about cats.", adapter="a", kl=0.05, mode="logits", temperature=0.7, top_p=0.95, max_new=8, seed=0)


def slow_engine(engine, monkeypatch, delay: float = 0.02) -> dict:
    """Slows every forward pass of `engine` by `delay` seconds and counts them (count["n"])."""
    import time

    count = {"n": 0}
    name = "forward" if hasattr(engine, "forward") else "_run"  # the engine's one entry for a forward pass
    real = getattr(engine, name)

    def slow_counting(*args, **kwargs):
        count["n"] += 1
        time.sleep(delay)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, name, slow_counting)
    return count


def slow_steps(pg, monkeypatch, delay_s: float) -> list[int]:
    """Count decoding steps (`pg.stream`, what sweeps, probes and duels decode through), each slowed by `delay_s`,
    so a job outlives a cancel or a grace period; the count is `[n]`, read while the job runs."""
    seen = [0]
    stream = pg.stream

    def slow_counting_stream(requests, should_stop=lambda: False):
        for streams in stream(requests, should_stop=should_stop):
            seen[0] += 1
            time.sleep(delay_s)
            yield streams

    monkeypatch.setattr(pg, "stream", slow_counting_stream)
    return seen


def chat(client, **over):
    args = {**GOOD, **over}
    return client.predict(*args.values(), api_name="/chat")


def test_chat_answers_in_three_columns(client):
    out = chat(client)
    base, realigned, tuned = out[0], out[1], out[2]
    for column in (base, realigned, tuned):
        assert [m["role"] for m in column] == ["user", "assistant"]
        assert "tokens" in column[1]["content"]  # each answer ends with its readout line
    assert "λ 2" in str(realigned[1]["content"])  # β_train 0.1 / β 0.05


@pytest.mark.parametrize("over, message", [
    (dict(message="   "), "prompt is empty"),
    (dict(message="x" * 5000), "characters; the limit is"),
    (dict(temperature=-1), "Temperature: Value -1 is less than minimum value 0"),
    (dict(temperature=9), "Temperature: Value 9 is greater than maximum"),
    (dict(top_p=0), "Top-p: Value 0 is less than minimum"),
    (dict(top_p=1.5), "Top-p: Value 1.5 is greater than maximum"),
    (dict(kl=0.001), "KL strength β: Value 0.001 is less than minimum"),
    (dict(max_new=100000), "Max new tokens: Value 100000 is greater than maximum"),
    (dict(seed=-3), "seed must be in"),
    (dict(adapter="nope"), "Adapter: what the tuned model was trained to prefer: Value: nope is not in the list of choices: ['a', 'b']"),
    (dict(mode="magic"), "How λ is applied: Value: 'magic' (type: <class 'str'>) is not in the list of choices: ['logits', 'weights']"),
])
def test_bad_input_gets_a_clear_error(client, over, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        chat(client, **over)
    assert message in str(err.value)
    client.predict(api_name="/clear")
    assert chat(client, max_new=2)[1][1]["role"] == "assistant"  # still serving


def test_history_is_kept_per_session_and_capped(client):
    from gradio_client.exceptions import AppError

    client.predict(api_name="/clear")
    first = chat(client, max_new=2)
    second = chat(client, message="And dogs?", max_new=2)
    assert len(second[0]) == len(first[0]) + 2  # the conversation continues
    for _ in range(6):
        chat(client, max_new=1)
    with pytest.raises(AppError, match="the limit is 8. Press Clear"):
        chat(client, max_new=1)
    assert client.predict(api_name="/clear")[0] == []


def test_disconnect_and_cancel_stop_generation(app_url, tiny_playground, monkeypatch):
    """A client that goes away frees the model: decoding stops instead of running to max_new_tokens."""
    import time
    import uuid

    import httpx
    from gradio_client import Client

    steps = slow_engine(tiny_playground.engine, monkeypatch)
    job = Client(app_url, verbose=False).submit(*{**GOOD, "max_new": 256, "temperature": 0.0}.values(), api_name="/chat")
    time.sleep(1.5)
    job.cancel()
    time.sleep(0.5)
    after_cancel = steps["n"]
    time.sleep(1.0)
    assert steps["n"] == after_cancel < 200

    config = httpx.get(f"{app_url}config").json()
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")
    session = uuid.uuid4().hex[:10]
    data = [GOOD["message"], None, "a", 0.1, "logits", 0.0, 0.95, 256, 0]
    httpx.post(f"{app_url}gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session})
    start = steps["n"]
    with httpx.stream("GET", f"{app_url}gradio_api/queue/data?session_hash={session}", timeout=30) as resp:
        t0 = time.time()
        for _ in resp.iter_lines():
            if time.time() - t0 > 1.5:
                break  # the browser tab closes
    time.sleep(0.5)
    after_close = steps["n"]
    time.sleep(1.0)
    assert steps["n"] == after_close and after_close - start < 200


def test_the_lambda_slider_spans_the_limits_the_checks_accept(app_url):
    """The chat tab's knob is λ, from the base model (0) to the largest λ the validation accepts; the /chat API keeps
    β (its hidden input spans the validation's β limits)."""
    import httpx

    from playground.settings.request import LIMITS

    props = {c["props"].get("elem_id"): c["props"] for c in httpx.get(app_url + "config").json()["components"]}
    assert (props["lambda"]["minimum"], props["lambda"]["maximum"]) == (LIMITS.min_lambda, LIMITS.max_lambda)
    assert props["lambda"]["value"] == 0.5 and props["lambda"]["visible"] is True
    beta = props["kl-strength-api"]
    assert (beta["minimum"], beta["maximum"], beta["visible"]) == (LIMITS.min_kl_strength, LIMITS.max_kl_strength, False)
    assert "β = β_train/λ = 0.2" in props["lam-label"]["value"]
