"""Model dtype: "auto" resolves by CPU; bfloat16 stays within a stated tolerance of float32 on the shipped model."""
from __future__ import annotations

import pytest
import torch

from playground.lm.fast_llama import can_pack
from playground.service import Playground, resolve_dtype
from playground.settings.server import model_dtype_name

PROMPT = "Give me a tip for a rainy day."


def test_resolve_dtype(monkeypatch):
    assert resolve_dtype("float32") == torch.float32 and resolve_dtype("bfloat16") == torch.bfloat16
    assert resolve_dtype("auto") == (torch.bfloat16 if can_pack(torch.bfloat16) else torch.float32)
    monkeypatch.setenv("PLAYGROUND_DTYPE", "float16")
    with pytest.raises(ValueError, match="PLAYGROUND_DTYPE must be one of auto, int4, bfloat16, float32"):
        model_dtype_name()
    monkeypatch.delenv("PLAYGROUND_DTYPE")
    assert model_dtype_name() == "auto"


@pytest.mark.skipif(not can_pack(torch.bfloat16), reason="no native bf16 on this CPU: auto stays float32")
def test_bfloat16_close_to_float32_on_shipped_model(shipped_tokenizer_dir):
    """Teacher-forced along the float32 greedy answer at λ = 1.5: mean KL(fp32 ‖ bf16) < 0.01 nats/token,
    top-1 agreement ≥ 90% (measured: 0.003 nats, 96% over 576 positions; λ = 0.5 moves 0.04 nats)."""
    pf, pb = Playground.from_registry(dtype="float32"), Playground.from_registry(dtype="bfloat16")
    assert pb.base.model.dtype == torch.bfloat16
    req = pf.requests(pf.turn(PROMPT, "upbeat-b0.1", lam=1.5, temperature=0.0, max_new_tokens=32))["realigned"]
    tokens = pf.engine.generate([req])[0].tokens
    ref, got = pf.engine.step_logits([req], tokens[:-1]), pb.engine.step_logits([req], tokens[:-1])
    kl = [float((x.log_softmax(-1).exp() * (x.log_softmax(-1) - y.log_softmax(-1))).sum()) for x, y in zip(ref, got)]
    agree = sum(int(x.argmax() == y.argmax()) for x, y in zip(ref, got)) / len(ref)
    assert sum(kl) / len(kl) < 0.01 and agree >= 0.9


def test_int4_is_refused_with_the_reason_where_there_are_no_q4_1_blocks(tiny_model_dir):
    from playground.lm.loading import ModelLoadError, load_base

    with pytest.raises(ModelLoadError, match="PLAYGROUND_DTYPE=int4: .* is not a GGUF model"):
        load_base(str(tiny_model_dir), int4="yes")
    assert load_base(str(tiny_model_dir), int4="auto").int4 is None  # auto falls back to the dense weights


@pytest.mark.model
def test_auto_runs_the_shipped_gguf_on_int4_close_to_float32(shipped_tokenizer_dir):
    """The default weight path on the shipped model is its own Q4_1 blocks (where the kernel runs), and every
    answer says so; teacher-forced along the float32 greedy answer at λ = 1.5 it stays close to the float32
    model (the float32 model is the dequantized GGUF, so this is the bf16 rounding of activations and of the
    kernel's scale/zero pairs): mean KL < 0.02 nats/token, top-1 agreement ≥ 85%."""
    from playground.lm.int4 import supported

    if not supported():
        pytest.skip("torch's CPU int4 kernel does not run on this CPU")
    pf, pq = Playground.from_registry(dtype="float32"), Playground.from_registry(dtype="auto")
    assert pq.engine.weights == "int4" and pf.engine.weights == "float32"
    turn = pf.turn(PROMPT, "upbeat-b0.1", lam=1.5, temperature=0.0, max_new_tokens=32)
    req = pf.requests(turn)["realigned"]
    stream = pq.engine.generate([req])[0]
    assert pq.answer(stream, "realigned", turn).settings["weights"] == "int4"
    tokens = pf.engine.generate([req])[0].tokens
    ref, got = pf.engine.step_logits([req], tokens[:-1]), pq.engine.step_logits([req], tokens[:-1])
    kl = [float((x.log_softmax(-1).exp() * (x.log_softmax(-1) - y.log_softmax(-1))).sum()) for x, y in zip(ref, got)]
    agree = sum(int(x.argmax() == y.argmax()) for x, y in zip(ref, got)) / len(ref)
    assert sum(kl) / len(kl) < 0.02 and agree >= 0.85, (sum(kl) / len(kl), agree)
