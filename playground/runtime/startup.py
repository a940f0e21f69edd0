"""Serve the UI first, load the model after: a stand-in for the `Playground` while it loads.

Importing torch and transformers and loading the model take several seconds; building and serving the
UI needs only the adapters' names, β_train and descriptions, which the registry has. So the app builds its
UI on a `LazyPlayground`, starts serving, and then loads the real `Playground`. A request that arrives
before the model is ready waits for it (every attribute other than `adapters` waits), so nothing is lost.
This module imports neither torch nor transformers.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable

from playground import registry
from playground.settings.server import SERVE
from playground.settings.votes import TrainingSettings
from playground.settings.validation import InputError

if TYPE_CHECKING:
    from playground.service import Playground

LOAD_WAIT_S = SERVE.load_wait_s


class LazyPlayground:
    """`adapters` (name -> entry with beta_train, judge, description) now; everything else once `load` ran."""

    def __init__(self, adapters: dict) -> None:
        self._adapters = adapters
        self._ready = threading.Event()
        self._pg: Playground | None = None

    @classmethod
    def from_registry(cls, base: str = registry.DEFAULT_BASE) -> "LazyPlayground":
        """The registry's installed adapters and those trained in the app (the data dir's `adapters/`)."""
        entry = registry.get_base(base)
        trained, _skipped = registry.trained_adapters(TrainingSettings.from_env().adapters_dir, (entry.name, entry.source))
        return cls({a.name: a for a in [*registry.installed_adapters(base), *trained]})

    @property
    def adapters(self) -> dict:
        """The loaded Playground's adapters (adapters added while serving included), the registry's until then."""
        return self._pg.adapters if self._pg is not None else self._adapters

    def load(self, make: Callable[[], "Playground"]) -> "Playground":
        """Build the real Playground (e.g. `Playground.from_registry`) and release waiting requests."""
        pg = make()
        self._pg = pg
        self._ready.set()
        return pg

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def get(self, timeout: float = LOAD_WAIT_S) -> "Playground":
        """The loaded Playground, waiting for it if needed."""
        if not self._ready.wait(timeout):
            raise InputError(f"the model is still loading after {timeout:.0f} s; try again in a moment")
        assert self._pg is not None
        return self._pg

    def __getattr__(self, name: str):
        if name.startswith("_"):  # never wait on private or dunder look-ups (copy, pickle, repr probes)
            raise AttributeError(name)
        return getattr(self.get(), name)
