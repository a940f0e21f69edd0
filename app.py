"""Controllability Playground: the Gradio app. Builds the UI and wires events; logic lives in playground/.

Run: `python app.py` (binds 127.0.0.1, or 0.0.0.0 on a Hugging Face Space or with PLAYGROUND_LISTEN=1; port GRADIO_SERVER_PORT).
"""
from __future__ import annotations

import os
import time

import gradio as gr

from playground.feedback.config import duel_max_new_tokens
from playground.feedback.duel import DuelService
from playground.settings.server import SERVE, server_name
from playground.runtime.startup import LazyPlayground
from ui.calibrate_tab import build_calibrate_tab
from ui.chat_tab import build_chat_tab
from ui.feedback_tab import build_feedback_tab
from ui.first_screen import PLAIN
from ui.guidance_tab import build_guidance_tab
from ui.probes_tab import build_probes_tab
from ui.style import CSS, JS
from ui.tradeoff_tab import build_tradeoff_tab
from ui.train_panel import wire_adapter_pickers

TITLE = "Controllability Playground"
INTRO = f"""# {TITLE}
{PLAIN}"""


def build_demo(pg) -> gr.Blocks:
    """The whole UI on `pg`: a loaded Playground, or a LazyPlayground whose model is still loading."""
    # delete_cache: files handed to users (exports, images) are removed from Gradio's cache after an hour.
    with gr.Blocks(title=TITLE, delete_cache=(SERVE.delete_cache_s, SERVE.delete_cache_s)) as demo:
        gr.Markdown(INTRO)
        votes = DuelService(pg, max_new_tokens=duel_max_new_tokens())  # one vote store for both tabs, opened on first use
        # overflow "wrap": on a phone the tab names wrap onto a second line instead of hiding behind "⋯"
        with gr.Tabs(overflow_behavior="wrap", elem_id="main-tabs"):
            with gr.Tab("Side by side"):
                build_chat_tab(pg, votes)
            with gr.Tab("Feedback"):
                train_panel = build_feedback_tab(pg, votes)
            with gr.Tab("Trade-off"):
                build_tradeoff_tab(pg)
            with gr.Tab("DeRa check"):
                build_calibrate_tab(pg)
            with gr.Tab("Probes"):
                build_probes_tab(pg)
            with gr.Tab("Diffusion guidance"):
                build_guidance_tab()
        wire_adapter_pickers(demo, pg, train_panel)  # a trained adapter shows in every picker without a restart
    # api_open=False: no route skips the bounded queue and its concurrency groups (POST /gradio_api/run/... is off).
    demo.queue(max_size=SERVE.queue_max_size, default_concurrency_limit=SERVE.lm_concurrency, api_open=False)
    demo.playground = pg  # launch_kwargs serves the OpenAI-compatible /v1 routes on it (playground/api)
    return demo


def launch_kwargs(demo: gr.Blocks | None = None) -> dict:
    """Upload and body caps, security headers, no extra served paths, and (given the demo) 404 for direct runs
    of anything but its public unqueued events and 4xx with a message for bad input on every route (tests
    launch with the same)."""
    from starlette.middleware import Middleware

    from playground.runtime.http_guard import HttpGuard, admin_key, run_names

    key = admin_key()  # /monitoring: off without PLAYGROUND_ADMIN_KEY, behind it with one
    guard = Middleware(HttpGuard, max_body_bytes=SERVE.max_body_bytes, run_names=run_names(demo) if demo else None,
                       demo=demo, admin_key=key)
    app_kwargs: dict = {"middleware": [guard]}
    if getattr(demo, "playground", None) is not None:  # /v1: the OpenAI-compatible API on the same app and port
        from playground.api import openai_routes

        app_kwargs["routes"] = openai_routes(demo.playground)
    return dict(css=CSS, js=JS, allowed_paths=[], max_file_size=SERVE.max_file_size, app_kwargs=app_kwargs,
                enable_monitoring=key is not None)


def main() -> None:
    # Serve the UI first (gradio only), then import torch and load the model; requests wait for it.
    start = time.perf_counter()
    pg = LazyPlayground.from_registry()
    demo = build_demo(pg)
    demo.launch(server_name=server_name(), prevent_thread_lock=True, **launch_kwargs(demo),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    print(f"UI served in {time.perf_counter() - start:.2f} s; loading the model", flush=True)
    try:
        from playground.service import Playground

        pg.load(Playground.from_registry)
    except BaseException:
        demo.close()
        raise
    from playground.runtime.threads import release_openmp_pool

    release_openmp_pool()  # loading ran torch here; this thread now only waits (playground/runtime/threads.py)
    print(f"model ready in {time.perf_counter() - start:.2f} s", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
