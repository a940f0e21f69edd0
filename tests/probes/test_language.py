"""The language set: every translation present, and langid reads every prompt as its own language."""
from __future__ import annotations

from playground.probes.base import load_data
from playground.probes.metrics import language_of


def test_every_prompt_in_every_language_and_read_as_that_language() -> None:
    data = load_data("language")
    assert data["languages"] == ["en", "ko", "es", "de", "fr"]
    wrong = []
    for item in data["prompts"]:
        texts = [item[lang] for lang in data["languages"]]
        assert all(t.strip() for t in texts) and len(set(texts)) == 5
        wrong += [(item["id"], lang, language_of(item[lang])) for lang in data["languages"]
                  if language_of(item[lang]) != lang]
    assert wrong == []
