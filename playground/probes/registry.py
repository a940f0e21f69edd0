"""The probes by name: `PROBES` and `get_probe(name)`."""
from __future__ import annotations

from playground.probes.answers_question import AnswersQuestionProbe
from playground.probes.base import Probe
from playground.probes.judge_bias import JudgeBiasProbe
from playground.probes.language import LanguageProbe
from playground.probes.made_up import MadeUpProbe
from playground.probes.refusal import RefusalProbe
from playground.probes.sycophancy import SycophancyProbe

PROBES: dict[str, Probe] = {p.name: p for p in (
    AnswersQuestionProbe(), JudgeBiasProbe(), MadeUpProbe(), SycophancyProbe(), LanguageProbe(), RefusalProbe(),
)}


class UnknownProbeError(KeyError, ValueError):
    """An unknown probe name; catch it as KeyError or ValueError. The message lists the probes."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def available_probes() -> list[str]:
    return list(PROBES)


def get_probe(name: str) -> Probe:
    """The probe called `name`; an unknown name raises UnknownProbeError listing the probes."""
    try:
        return PROBES[name]
    except (KeyError, TypeError):
        raise UnknownProbeError(f"unknown probe {name!r}; available: {', '.join(PROBES)}") from None
