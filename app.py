"""Controllability Playground: the Gradio app. Builds the UI and wires events; logic lives in playground/.

Run: `python app.py` (binds 0.0.0.0 and GRADIO_SERVER_PORT, as on Hugging Face Spaces).
"""
from __future__ import annotations

import os
import time

import gradio as gr

from playground.settings import SERVE
from playground.startup import LazyPlayground
from ui.chat_tab import build_chat_tab
from ui.guidance_tab import build_guidance_tab
from ui.tradeoff_tab import build_tradeoff_tab

TITLE = "Controllability Playground"
INTRO = f"""# {TITLE}
Turn two knobs — **KL strength** and **temperature** — and watch a base language model and its
preference-tuned (DPO) adapter answer side by side. The diffusion tab shows the same extrapolation as
classifier-free guidance."""
CSS = ".gradio-container {max-width: 1400px !important}"


def build_demo(pg) -> gr.Blocks:
    """The whole UI on `pg`: a loaded Playground, or a LazyPlayground whose model is still loading."""
    # delete_cache: files handed to users (exports, images) are removed from Gradio's cache after an hour.
    with gr.Blocks(title=TITLE, delete_cache=(SERVE.delete_cache_s, SERVE.delete_cache_s)) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Side by side"):
            build_chat_tab(pg)
        with gr.Tab("Trade-off"):
            build_tradeoff_tab(pg)
        with gr.Tab("Diffusion guidance"):
            build_guidance_tab()
    demo.queue(max_size=SERVE.queue_max_size, default_concurrency_limit=SERVE.lm_concurrency)
    return demo


def main() -> None:
    # Serve the UI first (gradio only), then import torch and load the model; requests wait for it.
    start = time.perf_counter()
    pg = LazyPlayground.from_registry()
    demo = build_demo(pg)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), prevent_thread_lock=True,
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), css=CSS, allowed_paths=[])
    print(f"UI served in {time.perf_counter() - start:.2f} s; loading the model", flush=True)
    try:
        from playground.service import Playground

        pg.load(Playground.from_registry)
    except BaseException:
        demo.close()
        raise
    print(f"model ready in {time.perf_counter() - start:.2f} s", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
