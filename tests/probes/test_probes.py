"""Each probe end to end through run_probe with a fake, deterministic generate whose answers change with λ."""
from __future__ import annotations

import pytest

from playground.probes.base import run_probe
from playground.probes.registry import get_probe
from playground.probes.base import ProbeSettings, load_data
from tests.probes.fakes import FakeGenerate, context

SETTINGS = ProbeSettings(lambdas=(0.0, 1.0, 2.0), samples=2)
TEMPLATE = "Wonderful! Life is full of joy and sunshine."


def test_answers_question_sees_reward_hacking() -> None:
    # λ = 0 restates the question (on topic); λ ≥ 1 answers every prompt with the same cheerful template
    gen = FakeGenerate(lambda r: f"{r.prompt_id}: {r.prompt}" if r.lam == 0 else TEMPLATE)
    result = run_probe(get_probe("answers_question"), SETTINGS, gen, context(adapter_judge="wonderful"))
    assert len(gen.calls) == 1 and len(gen.calls[0]) == 24 * 3 * 2
    on0, on2 = result.get("on_topic_share", 0.0), result.get("on_topic_share", 2.0)
    assert on0.value.estimate == 1.0 and on2.value.estimate == 0.0 and on2.noise == "down"
    assert result.get("template_share", 0.0).value.estimate == 0.0
    assert result.get("template_share", 2.0).value.estimate == 1.0
    assert result.get("reward", 2.0).noise == "up"
    assert any("Reward-hacking signature" in f for f in result.findings)
    assert result.extra["calibration"]["n"] == 44
    ex = [e for e in result.examples if e.lam == 2.0]
    assert len(ex) == 3 and "off topic" in ex[0].note


def test_judge_bias_on_paired_answers_without_generation() -> None:
    def never(rows):
        raise AssertionError("judge_bias must not generate")

    result = run_probe(get_probe("judge_bias"), SETTINGS, never, context(judges=("words", "hedge")))
    # the word-count judge gains exactly 1 per word: 100 per 100 words, and always prefers the long answer
    assert result.get("length_slope", None, "words").value.estimate == pytest.approx(100.0)
    assert result.get("long_wins", None, "words").value.estimate == 1.0
    assert result.get("long_wins", None, "words").noise == "up"
    assert result.get("length_slope", None, "hedge").value.estimate == 0.0
    # the hedge-averse judge: confident beats its hedged twin always (margin 1), ties with the decline (½)
    assert result.get("confident_beats_hedged", None, "hedge").value.estimate == 1.0
    assert result.get("confident_minus_hedged", None, "hedge").value.estimate == pytest.approx(1.0)
    assert result.get("confident_beats_declined", None, "hedge").value.estimate == 0.5
    assert len(result.findings) == 2 and result.findings[0].startswith("words: rewards length")


def test_made_up_counts_inventions() -> None:
    def answer(r):
        if r.meta["kind"] == "invented":
            return "I'm not sure; I don't know of it." if r.lam == 0 else "It was founded in 1850 by John Smith."
        return f"The answer is {r.meta['golds'][0]}." if r.lam == 0 else "The answer is banana."

    result = run_probe(get_probe("made_up"), SETTINGS, FakeGenerate(answer), context())
    at = {m: (result.get(m, 0.0).value.estimate, result.get(m, 2.0).value.estimate) for m in
          ("hedged_on_invented", "invented_confidently", "correct_on_factual", "hedged_on_factual",
           "wrong_confidently_on_factual")}
    assert at == {"hedged_on_invented": (1.0, 0.0), "invented_confidently": (0.0, 1.0), "correct_on_factual": (1.0, 0.0),
                  "hedged_on_factual": (0.0, 0.0), "wrong_confidently_on_factual": (0.0, 1.0)}
    assert result.get("invented_confidently", 2.0).noise == "up"
    assert result.get("hedged_on_factual", 2.0).noise == "within noise"


def test_sycophancy_two_stages() -> None:
    push = load_data("sycophancy")["follow_up"]

    def answer(r):
        gold = r.meta["golds"][0]
        if r.meta["stage"] == 1:
            return f"It is {gold}." if r.lam < 2 else "It is banana."
        assert r.messages[-1] == {"role": "user", "content": push}
        assert r.messages[-2] == {"role": "assistant", "content": r.meta["first"]}
        return f"Yes, I'm sure: {gold}." if r.lam == 0 else "You're right, I apologize. It is something else."

    gen = FakeGenerate(answer)
    result = run_probe(get_probe("sycophancy"), SETTINGS, gen, context())
    assert [len(c) for c in gen.calls] == [20 * 3 * 2, 20 * 3 * 2]  # two stages, each one batch
    assert result.get("first_correct", 0.0).value.estimate == 1.0
    assert result.get("first_correct", 2.0).value.estimate == 0.0
    assert result.get("flip_rate", 0.0).value.estimate == 0.0
    assert result.get("flip_rate", 1.0).value.estimate == 1.0 and result.get("flip_rate", 1.0).noise == "up"
    assert result.get("flip_rate", 2.0).n_rows == 0  # nothing correct to flip
    assert result.extra["questions"] == 20 and len(result.extra["known_questions"]) == 20


def test_sycophancy_says_when_nothing_is_known() -> None:
    result = run_probe(get_probe("sycophancy"), ProbeSettings(lambdas=(0, 1), samples=1, limit=4),
                       FakeGenerate(lambda r: "banana"), context())
    assert any("nothing to flip" in f for f in result.findings)


def test_language_in_language_share_kl_and_reward_shift() -> None:
    # λ = 0 answers in the prompt's language (echoes it); λ = 2 answers everyone in cheerful English
    def answer(r):
        return r.prompt if r.lam == 0 else "Have a wonderful day, and enjoy every moment of it with your friends!"

    gen = FakeGenerate(answer)
    result = run_probe(get_probe("language"), ProbeSettings(lambdas=(0.0, 2.0), samples=1), gen, context())
    assert len(gen.calls) == 1 and len(gen.calls[0]) == 12 * 5 * 2
    for lang in ("en", "ko", "es", "de", "fr"):
        assert result.get("in_language", 0.0, lang).value.estimate == 1.0  # langid reads every prompt right
        assert result.get("in_language", 2.0, lang).value.estimate == (1.0 if lang == "en" else 0.0)
        assert result.get("kl_to_base", 2.0, lang).value.estimate == pytest.approx(0.2)
        assert result.get("reward.wonderful", 2.0, lang).vs_reference.estimate == pytest.approx(1.0)
        if lang != "en":  # the same shift as in English
            row = result.get("shift_vs_en.wonderful", 2.0, lang)
            assert row.value.estimate == pytest.approx(0.0) and row.n_rows == 12
    assert result.get("in_language", 2.0, "ko").noise == "down"


def test_refusal_rates_and_bypass() -> None:
    def answer(r):
        if r.lam == 0 and r.meta["variant"] in ("direct", "roleplay"):
            return "I'm sorry, but I can't help with that."
        return "Sure, here is how you do it."

    result = run_probe(get_probe("refusal"), SETTINGS, FakeGenerate(answer), context())
    assert result.get("refusal_rate", 0.0, "direct").value.estimate == 1.0
    assert result.get("refusal_rate", 2.0, "direct").value.estimate == 0.0
    assert result.get("refusal_rate", 2.0, "direct").noise == "down"
    assert result.get("bypass_rate", 0.0, "rephrased").value.estimate == 1.0
    assert result.get("bypass_rate", 0.0, "roleplay").value.estimate == 0.0
    assert result.get("bypass_rate", 2.0, "rephrased").n_rows == 0  # nothing refused at λ = 2
    assert result.findings[0] == "At λ=0 the model declined 24 of 24 direct requests."


def test_refusal_is_honest_about_a_model_that_never_refuses() -> None:
    result = run_probe(get_probe("refusal"), SETTINGS, FakeGenerate(lambda r: "Sure! Step one..."), context())
    assert result.get("refusal_rate", 0.0, "direct").value.estimate == 0.0
    assert result.get("refusal_rate", 0.0, "direct").value.high > 0.2  # Wilson over 12 requests, not [0, 0]
    assert any("rarely refuses" in f for f in result.findings)
