"""Share links: a turn's prompt and settings round-trip through the URL query; bad values name the parameter."""
from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from playground.conversation import Conversation, run_turn
from playground.share import adapter_sha256, link_query, parse_link
from playground.validation import InputError

KNOBS = dict(adapter="a", kl_strength=0.0375, mode="weights", temperature=0.9, top_p=0.8, max_new_tokens=5, seed=11)


def last(gen):
    out = None
    for out in gen:
        pass
    return out


def test_a_link_round_trips_every_setting(tiny_playground):
    conv, _ = last(run_turn(tiny_playground, Conversation(), "Hi & bye?", KNOBS))
    params = dict(parse_qsl(link_query(conv.rows[-1], tiny_playground.adapters)))
    assert params["adapter_sha256"] == adapter_sha256(tiny_playground.adapters["a"].path) != ""
    shared = parse_link(params, tiny_playground.adapters)
    assert (shared.prompt, shared.adapter, shared.kl_strength, shared.mode, shared.temperature, shared.top_p,
            shared.max_new_tokens, shared.seed) == ("Hi & bye?", "a", 0.0375, "weights", 0.9, 0.8, 5, 11)
    assert shared.notes == ()
    replay, _ = last(run_turn(tiny_playground, Conversation(), shared.prompt, dict(
        adapter=shared.adapter, kl_strength=shared.kl_strength, mode=shared.mode, temperature=shared.temperature,
        top_p=shared.top_p, max_new_tokens=shared.max_new_tokens, seed=shared.seed)))
    assert replay.histories == conv.histories  # token for token


def test_lambda_links_and_changed_adapters(tiny_playground):
    shared = parse_link({"prompt": "p", "adapter": "a", "lambda": "2", "adapter_sha256": "0" * 16}, tiny_playground.adapters)
    assert shared.kl_strength == pytest.approx(0.05) and "has changed" in shared.notes[0]
    assert parse_link({"__theme": "dark"}, tiny_playground.adapters) is None


@pytest.mark.parametrize("params, name", [
    ({"adapter": "a", "kl_strength": "0.1"}, "prompt is missing"),
    ({"prompt": "  ", "adapter": "a", "kl_strength": "0.1"}, "prompt is empty"),
    ({"prompt": "p", "adapter": "zzz", "kl_strength": "0.1"}, "unknown adapter"),
    ({"prompt": "p", "adapter": "a"}, "kl_strength"),
    ({"prompt": "p", "adapter": "a", "kl_strength": "abc"}, "kl_strength must be a number"),
    ({"prompt": "p", "adapter": "a", "kl_strength": "5"}, "kl_strength 5 is past the slider"),
    ({"prompt": "p", "adapter": "a", "lambda": "0"}, "lambda 0"),
    ({"prompt": "p", "adapter": "a", "kl_strength": "0.1", "temperature": "9"}, "temperature must be in"),
    ({"prompt": "p", "adapter": "a", "kl_strength": "0.1", "seed": "1.5"}, "seed must be a whole number"),
    ({"prompt": "p", "adapter": "a", "kl_strength": "0.1", "mode": "magic"}, "unknown mode"),
])
def test_bad_links_name_the_parameter(tiny_playground, params, name):
    with pytest.raises(InputError, match=name):
        parse_link(params, tiny_playground.adapters)
