"""Bad input on any route of the launched app answers 4xx with a message, never a bare 500 or a broken stream.

The routes are Gradio's own (queue, call, run, upload, page); `playground/runtime/http_guard.py` answers for them.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.test_app import GOOD, app_url, client  # noqa: F401  (fixtures)
from tests.runtime.test_http_guard import post

PUBLIC_JOBS = ("chat", "duel", "vote", "train_votes", "tradeoff_sweep", "tradeoff_controls", "probe", "token_view", "dera_check")


def request(url: str, method: str = "GET") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def detail(body: bytes) -> str:
    return json.loads(body)["detail"]


@pytest.fixture(scope="module")
def deps(app_url):
    with urllib.request.urlopen(app_url + "config", timeout=30) as r:
        return json.loads(r.read())["dependencies"]


def test_an_fn_index_that_names_no_event_is_404_with_the_range(app_url, deps):
    last = len(deps) - 1
    for route in ("gradio_api/run/predict", "gradio_api/queue/join"):
        for fn_index in (last + 1, -1, 10**9):
            status, _, body = post(app_url + route, json.dumps({"data": [], "fn_index": fn_index, "session_hash": "s1"}).encode())
            assert status == 404 and detail(body) == f"fn_index must name one of the app's events, in [0, {last}]; got {fn_index}"


def test_run_predict_runs_only_what_the_page_runs_directly(app_url, deps):
    """The page's route for unqueued events: a browser-only step or a queued event by fn_index is 404 with a
    message; an unqueued event given the wrong inputs is 400 with a message (each was 500 with `{"error": null}`)."""
    browser_step = next(i for i, d in enumerate(deps) if not d.get("backend_fn"))
    queued = next(i for i, d in enumerate(deps) if d.get("backend_fn") and d.get("queue") is not False)
    for fn_index, says in ((browser_step, "runs in the browser"), (queued, "queued")):
        status, _, body = post(app_url + "gradio_api/run/predict", json.dumps({"data": [], "fn_index": fn_index}).encode())
        assert status == 404 and says in detail(body), (fn_index, body)
    for fn_index, d in enumerate(deps):
        if d.get("backend_fn") and d.get("queue") is False and d.get("inputs"):
            status, _, body = post(app_url + "gradio_api/run/predict", json.dumps({"data": [], "fn_index": fn_index}).encode())
            assert 400 <= status < 500 and detail(body), (fn_index, status, body[:300])


@pytest.mark.parametrize("name", PUBLIC_JOBS)
def test_call_v2_with_no_arguments_is_4xx_naming_the_missing_one(app_url, name):
    status, _, body = post(f"{app_url}gradio_api/call/v2/{name}", b"{}")
    assert status < 500, body[:300]
    if status >= 400:
        assert "No value provided for required argument" in detail(body)


def test_a_call_to_no_event_is_404(app_url):
    for route in ("call/nonexistent", "call/v2/nonexistent", "call/nonexistent/"):
        status, _, body = post(f"{app_url}gradio_api/{route}", b'{"data": []}')
        assert status == 404 and "no API endpoint named nonexistent" in detail(body)


def test_a_stream_for_no_event_is_404_not_a_broken_stream(app_url):
    for route in ("call/chat/0", "call/v2/chat/0", "call/nonexistent/abc"):
        status, body = request(f"{app_url}gradio_api/{route}")
        assert status == 404 and "no event '" in detail(body), route
    status, body = request(f"{app_url}gradio_api/queue/data?session_hash=never-joined")
    assert status == 404 and "session_hash 'never-joined' has no queued event" in detail(body)


def test_odd_multipart_headers_on_upload_are_400(app_url):
    part = b"Content-Disposition: form-data; name=\"files\"; filename*=UTF-8''%FF"
    body = b"--XX\r\n" + part + b"\r\n\r\nhello\r\n--XX--\r\n"
    status, _, text = post(app_url + "gradio_api/upload", body, "multipart/form-data; boundary=XX")
    assert status == 400 and "POST /gradio_api/upload: this request could not be handled" in detail(text)
    assert "Traceback" not in text.decode()


def test_odd_queries_on_the_page_are_400(app_url):
    for method in ("GET", "HEAD"):
        status, body = request(app_url + "?page=%C3%9Fs", method)
        assert status == 400, (method, status)
        if method == "GET":
            assert "GET /: this request could not be handled (KeyError" in detail(body)


def test_good_requests_still_answer(app_url, deps):
    status, body = request(app_url)
    assert status == 200 and b"<html" in body[:2000].lower()
    status, _, body = post(app_url + "gradio_api/call/chat", json.dumps(
        {"data": ["Hi", None, "a", 0.1, "logits", 0.0, 0.95, 2, 0]}).encode())
    assert status == 200
    event_id = json.loads(body)["event_id"]
    status, stream = request(f"{app_url}gradio_api/call/chat/{event_id}")
    assert status == 200 and b"event: complete" in stream


def test_the_guard_turns_silent_500s_into_400s_and_leaves_other_apis_errors_alone():
    """Unit level (a bare ASGI app behind the guard): Gradio's `{"error": null}` 500 becomes 400 with a message,
    a raised exception 400 naming the route; a 500 outside /gradio_api/ with its own message (the /v1 API's
    OpenAI-shaped errors) passes unchanged."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from playground.runtime.http_guard import HttpGuard

    async def silent(request):
        return JSONResponse({"error": None}, status_code=500)

    async def says(request):
        return JSONResponse({"error": {"message": "the server failed to answer (KeyError); try again"}}, status_code=500)

    async def raises(request):
        raise KeyError("page")

    app = Starlette(routes=[Route("/gradio_api/run/predict", silent, methods=["POST"]), Route("/v1/models", says),
                            Route("/gradio_api/info", raises)], middleware=[Middleware(HttpGuard, max_body_bytes=1000)])
    client = TestClient(app, raise_server_exceptions=False)
    r = client.post("/gradio_api/run/predict", json={})
    assert r.status_code == 400 and "the event could not run on this input" in r.json()["detail"]
    r = client.get("/v1/models")
    assert r.status_code == 500 and r.json() == {"error": {"message": "the server failed to answer (KeyError); try again"}}
    r = client.get("/gradio_api/info")
    assert r.status_code == 400 and r.json()["detail"].startswith("GET /gradio_api/info: this request could not be handled (KeyError: 'page')")
    assert r.headers["x-content-type-options"] == "nosniff"


def test_monitoring_is_off_without_an_admin_key(app_url):
    """Gradio's /monitoring/summary listed request counts, success rates and timings of every event to anyone."""
    for route in ("monitoring", "monitoring/summary"):
        status, body = request(app_url + route)
        assert status == 403 and detail(body) == "Monitoring is not enabled.", route


def test_monitoring_answers_only_the_admin_key_when_one_is_set(tiny_playground, monkeypatch):
    from tests.test_app import serve

    monkeypatch.setenv("PLAYGROUND_ADMIN_KEY", "s3cret-admin")
    demo, url = serve(tiny_playground)
    try:
        for headers in ({}, {"X-Admin-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
            req = urllib.request.Request(url + "monitoring/summary", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=30)
            assert err.value.code == 401 and "needs the admin key (PLAYGROUND_ADMIN_KEY)" in detail(err.value.read())
        for headers in ({"X-Admin-Key": "s3cret-admin"}, {"Authorization": "Bearer s3cret-admin"}):
            with urllib.request.urlopen(urllib.request.Request(url + "monitoring/summary", headers=headers), timeout=30) as r:
                assert r.status == 200 and "functions" in json.loads(r.read())
    finally:
        demo.close()


@pytest.mark.parametrize("seed, message", [
    (True, "Seed: must be a number; got bool True"),  # Gradio's Number made it 1
    (1.5, "Seed: must be a whole number; got 1.5"),  # Gradio's Number rounded it to 2
    (2**64, "seed must be in [0, 2147483647]; got 18446744073709551616"),  # was 1.84467e+19
])
def test_a_seed_is_a_whole_number_echoed_exactly_through_the_app(client, seed, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        client.predict(*{**GOOD, "seed": seed}.values(), api_name="/chat")
    assert message in str(err.value)
