"""The realignment math: exact endpoints, monotone KL, seeds, batch invariance, agreement with peft/HF."""
from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tests.lm.requests import request, reseeded

PROMPT = "Tell me something about cats."


@pytest.fixture(scope="module")
def ids(tiny_playground):
    return tiny_playground.encode(PROMPT)


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tiny_adapters):
    """Independent references: the plain base model and peft's base+adapter 'a'."""
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_adapters["a"]).eval()
    return base, tuned


def full_logits(model, ids, continuation):
    with torch.no_grad():
        x = torch.tensor([list(ids) + list(continuation)])
        return model(input_ids=x).logits[0, len(ids) - 1:].float()


CONT = [510, 2111, 314, 253, 1345]


def test_lambda_zero_is_base_and_one_is_tuned(tiny_playground, ids, reference):
    base, tuned = reference
    reqs = [request(ids, adapter="a", lam=0.0), request(ids, adapter="a", lam=1.0), request(ids, adapter=None)]
    steps = tiny_playground.engine.step_logits(reqs, CONT)
    got = torch.stack(steps)  # [positions, requests, V]
    want_base, want_tuned = full_logits(base, ids, CONT), full_logits(tuned, ids, CONT)
    torch.testing.assert_close(got[:, 0], want_base, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[:, 2], want_base, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[:, 1], want_tuned, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(want_base, want_tuned, atol=1e-2)  # the adapter really changes the model


def test_lambda_mix_is_linear_extrapolation(tiny_playground, ids):
    lams = [0.0, 0.5, 1.0, 2.0]
    steps = tiny_playground.engine.step_logits([request(ids, adapter="a", lam=l) for l in lams], CONT[:2])
    for logits in steps:
        l0, l1 = logits[0], logits[2]
        torch.testing.assert_close(logits[1], l0 + 0.5 * (l1 - l0), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits[3], l0 + 2.0 * (l1 - l0), atol=1e-5, rtol=1e-5)


def test_weights_mode_endpoints(tiny_playground, ids, reference):
    base, tuned = reference
    steps = tiny_playground.engine.step_logits(
        [request(ids, adapter="a", lam=0.0, mode="weights"), request(ids, adapter="a", lam=1.0, mode="weights")], CONT)
    got = torch.stack(steps)
    torch.testing.assert_close(got[:, 0], full_logits(base, ids, CONT), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[:, 1], full_logits(tuned, ids, CONT), atol=1e-4, rtol=1e-4)


def test_kl_to_base_grows_with_lambda(tiny_playground, ids):
    reqs = [request(ids, adapter="a", lam=l, temperature=0.0, max_new_tokens=8) for l in (0.0, 0.5, 1.0, 2.0)]
    # Same fixed continuation for all λ, so the KL differences come from λ alone.
    steps = tiny_playground.engine.step_logits(reqs, CONT)
    base = torch.stack([s[0] for s in steps])
    kls = []
    for i in range(4):
        mix = torch.stack([s[i] for s in steps])
        kls.append(float((torch.softmax(mix, -1) * (torch.log_softmax(mix, -1) - torch.log_softmax(base, -1))).sum(-1).mean()))
    assert kls[0] == pytest.approx(0.0, abs=1e-6)
    assert kls[0] < kls[1] < kls[2] < kls[3]
    streams = tiny_playground.engine.generate(reqs)
    assert streams[0].kl_mean == pytest.approx(0.0, abs=1e-6)
    assert streams[3].kl_mean > 0


def test_seed_reproduces_and_differs(tiny_playground, ids):
    req = request(ids, adapter="a", lam=1.5, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=7)
    a = tiny_playground.engine.generate([req])[0].tokens
    b = tiny_playground.engine.generate([req])[0].tokens
    c = tiny_playground.engine.generate([reseeded(req, 8)])[0].tokens
    assert a == b
    assert a != c


def test_mixed_batch_equals_each_alone(tiny_playground, ids):
    other = tiny_playground.encode("A much longer prompt about gardening in the rain, please.")
    reqs = [
        request(ids, adapter="a", lam=0.5, temperature=0.0, max_new_tokens=10),
        request(other, adapter="b", lam=2.0, temperature=0.8, top_p=0.9, max_new_tokens=6, seed=3),
        request(ids, adapter=None, temperature=1.2, max_new_tokens=9, seed=4),
        request(other, adapter="a", lam=0.7, mode="weights", temperature=0.0, max_new_tokens=7),
    ]
    together = tiny_playground.engine.generate(reqs)
    for req, got in zip(reqs, together):
        alone = tiny_playground.engine.generate([req])[0]
        assert got.tokens == alone.tokens


def test_greedy_matches_hf_generate(tiny_playground, ids, reference):
    base, tuned = reference
    n = 10
    streams = tiny_playground.engine.generate([
        request(ids, adapter="a", lam=0.0, temperature=0.0, max_new_tokens=n),
        request(ids, adapter="a", lam=1.0, temperature=0.0, max_new_tokens=n),
    ])
    x = torch.tensor([list(ids)])
    for model, stream in zip((base, tuned), streams):
        want = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                              eos_token_id=tiny_playground.engine.stop_ids.tolist(), pad_token_id=2)[0, x.shape[1]:].tolist()
        assert stream.tokens == want[: len(stream.tokens)]


def test_the_decode_path_is_chosen_when_the_engine_is_built(tiny_playground, ids):
    """continuous (scheduler), batch (fast decoder, here) and generic (transformers) are fixed at construction."""
    engine = tiny_playground.engine
    batch, generic = engine.with_path("batch"), engine.with_path("generic")
    assert (engine.continuous, batch.continuous, batch.uses_fast_decoder, generic.uses_fast_decoder) == (True, False, True, False)
    req = request(ids, adapter="a", lam=1.5, temperature=0.0, max_new_tokens=6)
    assert batch.generate([req])[0].tokens == engine.generate([req])[0].tokens
    assert generic.generate([req])[0].tokens
    with pytest.raises(AttributeError):
        engine.continuous = False  # no flag to flip
    with pytest.raises(ValueError, match="unknown decode path"):
        engine.with_path("fast")
