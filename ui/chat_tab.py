"""The "Side by side" tab: one prompt, base / realigned / tuned answers streaming together.

Only components and event wiring live here; every decision is made in `playground/`.
"""
from __future__ import annotations

import json

import gradio as gr

from playground.conversation import TITLES, Conversation, lambda_label, run_turn
from playground.settings import CHAT, COLUMNS, DEFAULT_DECODE, LIMITS, SERVE
from playground.validation import InputError
from ui.components import Dropdown, Number, Radio, Slider

DEFAULT_BETA_FACTOR = CHAT.beta_factor
LM_EVENT = {"concurrency_id": "lm", "concurrency_limit": SERVE.lm_concurrency, "time_limit": LIMITS.request_timeout_s}
EXPLAIN = """**Base vs preference-tuned, one knob apart.** The tuned model is a LoRA adapter trained with DPO at KL strength
β_train. Decoding-time realignment mixes the two models' next-token logits, `ℓ = ℓ_base + λ·(ℓ_tuned − ℓ_base)`
with `λ = β_train / β`, which approximates the model you would get by retraining at KL strength β
(Liu et al., ICML 2024). **Higher β → closer to the base model; lower β → further towards the adapter's judge.**
β is *nominal*: the shipped adapters (one DPO epoch, LoRA) did not reach the KL-regularised optimum the formula
assumes, so the λ that best matches an adapter trained at another β can differ (see the README's DeRa check)."""


def _knobs(adapter, kl, mode, temperature, top_p, max_new_tokens, seed) -> dict:
    return dict(adapter=adapter, kl_strength=kl, mode=mode, temperature=temperature, top_p=top_p,
                max_new_tokens=max_new_tokens, seed=seed)


def _outputs(conv: Conversation) -> list:
    return [conv.display(c) for c in COLUMNS] + [conv]


def build_chat_tab(pg) -> None:
    """`pg`: a Playground, or a LazyPlayground that is still loading (only `pg.adapters` is read here)."""
    names = sorted(pg.adapters)
    default_adapter = "upbeat-b0.1" if "upbeat-b0.1" in names else (names[0] if names else None)
    beta0 = pg.adapters[default_adapter].beta_train if default_adapter else 0.1
    gr.Markdown(EXPLAIN)
    conv_state = gr.State(Conversation())
    with gr.Row():
        adapter = Dropdown(names, value=default_adapter, label="Adapter (preference-tuned LoRA)",
                              info=pg.adapters[default_adapter].description if default_adapter else "")
        mode = Radio([("Decoding-time realignment (exact KL trade-off)", "logits"),
                         ("Weight scaling: LoRA × λ (cheaper approximation)", "weights")],
                        value="logits", label="How λ is applied")
    with gr.Row():
        kl = Slider(beta0 / LIMITS.max_lambda, CHAT.beta_max_factor * beta0, value=DEFAULT_BETA_FACTOR * beta0, step=beta0 / 40, label="KL strength β", elem_id="kl-strength",
                       info="Higher β = closer to the base model; lower β = more aligned, less diverse")
        temperature = Slider(0.0, LIMITS.max_temperature, value=DEFAULT_DECODE.temperature, step=0.05, label="Temperature",
                                info="Higher = more random and diverse; 0 = greedy")
    lam_label = gr.Markdown(lambda_label(1 / DEFAULT_BETA_FACTOR, DEFAULT_BETA_FACTOR * beta0))
    with gr.Accordion("More settings", open=False):
        with gr.Row():
            top_p = Slider(0.05, 1.0, value=DEFAULT_DECODE.top_p, step=0.05, label="Top-p",
                              info="Lower = only the most likely tokens; 1 = no truncation")
            max_new = Slider(1, LIMITS.max_new_tokens, value=DEFAULT_DECODE.max_new_tokens, step=1,
                                label="Max new tokens", info="Longer answers take longer")
            seed = Number(DEFAULT_DECODE.seed, precision=0, label="Seed", info="Same seed + settings = same text")
    with gr.Row(equal_height=True):
        chats = [gr.Chatbot(label=TITLES[c], height=380, elem_id=f"chat-{c}") for c in COLUMNS]
    with gr.Row():
        prompt = gr.Textbox(placeholder="Type a message and press Enter", show_label=False, scale=5, elem_id="prompt")
        send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
    with gr.Row():
        regen = gr.Button("Regenerate (next seed)", size="sm")
        clear = gr.Button("Clear", size="sm")
    gr.Examples(list(CHAT.examples), inputs=prompt)
    with gr.Accordion("Limits", open=False):
        gr.Markdown(f"```json\n{json.dumps(LIMITS.__dict__, indent=1)}\n```")

    knob_inputs = [adapter, kl, mode, temperature, top_p, max_new, seed]

    def respond(message, conv, *knob_values):
        try:
            for new, _ in run_turn(pg, conv, message, _knobs(*knob_values)):
                yield _outputs(new) + [""]
        except InputError as err:
            raise gr.Error(str(err)) from None

    def regenerate(conv, *knob_values):
        if conv.last is None:
            raise gr.Error("nothing to regenerate yet; send a message first")
        values = list(knob_values)
        values[-1] = int(values[-1] or 0) + 1
        base = conv.without_last_turn()
        try:
            for new, _ in run_turn(pg, base, conv.last.prompt, _knobs(*values)):
                yield _outputs(new) + [values[-1]]
        except InputError as err:
            raise gr.Error(str(err)) from None

    def on_adapter(name):
        if name not in pg.adapters:
            raise gr.Error(f"unknown adapter {name!r}; available: {', '.join(names)}")
        b = pg.adapters[name].beta_train
        return (Slider(minimum=b / LIMITS.max_lambda, maximum=CHAT.beta_max_factor * b, value=DEFAULT_BETA_FACTOR * b, step=b / 40),
                Dropdown(info=pg.adapters[name].description), lambda_label(1 / DEFAULT_BETA_FACTOR, DEFAULT_BETA_FACTOR * b))

    def on_kl(name, beta):
        b = pg.adapters[name].beta_train if name in pg.adapters else beta0
        return lambda_label(b / beta if beta else float("inf"), beta)

    outs = chats + [conv_state]
    prompt.submit(respond, [prompt, conv_state, *knob_inputs], outs + [prompt], api_name="chat", **LM_EVENT)
    send.click(respond, [prompt, conv_state, *knob_inputs], outs + [prompt], api_visibility="private", **LM_EVENT)
    regen.click(regenerate, [conv_state, *knob_inputs], outs + [seed], api_name="regenerate", **LM_EVENT)
    clear.click(lambda: _outputs(Conversation()), None, outs, api_name="clear")
    adapter.change(on_adapter, adapter, [kl, adapter, lam_label], api_visibility="private")
    kl.change(on_kl, [adapter, kl], lam_label, api_visibility="private")
