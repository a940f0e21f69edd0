"""Test support the actors import (the driver's working directory is on their path): an engine that decodes one
step of every batch, then waits for a gate file, so a test can act on a shard that is certainly mid-decode."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from playground.distributed.specs import EngineSpec


class _Gated:
    def __init__(self, pg, gate: Path) -> None:
        self._pg, self._gate = pg, gate

    def __getattr__(self, name):
        return getattr(self._pg, name)

    def stream(self, requests, should_stop=lambda: False):
        for step, streams in enumerate(self._pg.stream(requests, should_stop=should_stop)):
            yield streams
            deadline = time.monotonic() + 120  # never hangs a run for good: the test opens the gate or kills us
            while step == 0 and not self._gate.exists() and time.monotonic() < deadline:
                time.sleep(0.02)


@dataclass(frozen=True)
class GatedSpec(EngineSpec):
    gate: str = ""  # the file that lets decoding go on after the first step

    def load(self):
        return _Gated(super().load(), Path(self.gate))
