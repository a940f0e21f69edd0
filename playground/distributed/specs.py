"""What an actor loads: `EngineSpec` (a registry base model or a local model directory, and LoRA adapters) and the
three ways to write one — `registry_spec` (the CLI's `--adapter NAME`), `directory_spec` (a model directory and
adapter directories) and `playground_spec` (a running Playground's, the app's). Small and picklable: a spec travels
to every actor, which builds its own Playground from it (`EngineSpec.load`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Environment the actors take from the driver (a remote node's own environment does not have them).
FORWARDED_ENV = ("PLAYGROUND_DTYPE", "PLAYGROUND_ADAPTER_DIR", "PLAYGROUND_CACHE", "PLAYGROUND_DATA_DIR", "HF_HUB_OFFLINE",
                 "HF_HOME", "MKL_CBWR")


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    path: str  # must be readable at the same path on every node (a shared filesystem or the same install)
    beta_train: float
    judge: str
    description: str = ""


@dataclass(frozen=True)
class EngineSpec:
    """What an actor loads: a registry base model (by name) or a local model directory, and LoRA adapters.

    Picklable and small: it travels to every actor, which builds its own Playground from it."""

    base: str  # a registry base model name, or a model source (directory, gguf:…) when `directory` is true
    adapters: tuple[AdapterSpec, ...] = ()
    registry_adapters: tuple[str, ...] = ()  # registry names, loaded through Playground.from_registry
    directory: bool = False
    dtype: str | None = None  # PLAYGROUND_DTYPE (None: the registry path takes the driver's setting, a directory float32)
    env: tuple[tuple[str, str], ...] = field(default_factory=lambda: tuple((k, os.environ[k]) for k in FORWARDED_ENV
                                                                           if k in os.environ))
    base_name: str | None = None  # the name adapter cards give their base (a directory spec of the app's model)
    chat: bool = True

    def load(self):
        """The Playground this spec names (in an actor: once per actor)."""
        from playground.service import AdapterInfo, Playground, resolve_dtype

        if not self.directory:
            return Playground.from_registry(self.base, adapters=list(self.registry_adapters), dtype=self.dtype)
        from playground.lm.loading import load_base

        weights = {} if self.dtype is None else {"dtype": resolve_dtype(self.dtype),
                                                 "int4": {"auto": "auto", "int4": "yes"}.get(self.dtype, "no")}
        return Playground(load_base(self.base, **weights),
                          [AdapterInfo(a.name, Path(a.path), a.beta_train, a.judge, a.description) for a in self.adapters],
                          base_names=[self.base_name] if self.base_name else [], chat=self.chat)


def registry_spec(*adapters: str) -> EngineSpec:
    """The spec of `python -m playground sweep --adapter NAME` (or of several adapters of one base): the
    registry's base with those adapters."""
    from playground import registry
    from playground.settings.server import model_dtype_name

    return EngineSpec(registry.get_adapter(adapters[0]).base, registry_adapters=tuple(adapters), dtype=model_dtype_name())


def directory_spec(model_dir: str | Path, adapters: dict[str, str | Path]) -> EngineSpec:
    """A local model directory and adapter directories (each with its card.json: beta and judge)."""
    import json

    specs = []
    for name, path in adapters.items():
        card = json.loads((Path(path) / "card.json").read_text(encoding="utf-8"))
        specs.append(AdapterSpec(name, str(Path(path).resolve()), float(card["beta"]), str(card["judge"])))
    return EngineSpec(str(Path(model_dir).resolve()), adapters=tuple(specs), directory=True)


def playground_spec(pg, adapters: Sequence[str]) -> EngineSpec:
    """The spec of a running Playground (the app's) with some of its adapters: the same base source, weight path
    and adapter directories, so an actor decodes what `pg` would (the paths must be readable on every node)."""
    from playground.settings.server import model_dtype_name

    infos = [pg.adapters[name] for name in adapters]
    return EngineSpec(str(pg.base.source), directory=True, dtype=model_dtype_name(), base_name=pg.base_name,
                      chat=getattr(pg, "chat", True),
                      adapters=tuple(AdapterSpec(i.name, str(Path(i.path).resolve()), float(i.beta_train), str(i.judge),
                                                 getattr(i, "description", "") or "") for i in infos))
