"""Several LoRA adapters on one copy of the base weights, chosen per batch row.

A peft LoRA adapter turns a linear layer W into W + s·B·A (s = lora_alpha / r, or lora_alpha / √r with
rsLoRA). Here every targeted `nn.Linear` is wrapped once by `RoutedLoRALinear`, which holds the A/B
matrices of every loaded adapter and adds, for each batch row i, `scale_i · s · B_a(i) A_a(i) x_i`:

- base rows get scale 0 (pure base model),
- tuned rows get scale 1 (exactly base+adapter, as peft computes it),
- weight-space extrapolation (ExPO) rows get scale λ.

The routing (which adapter and scale per row) travels with the batch: `FastLlamaDecoder` takes it per
row (see projections.py for its batch-invariant, float32 deltas); for generic models `AdapterSet.routing`
hands it to the modules for exactly one forward call, under the engine's lock. No global "active
adapter" ever changes between users. The delta is applied with a per-row scale vector (a row mask)
instead of splitting the batch per adapter.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator, Sequence

import torch
from safetensors.torch import load_file
from torch import nn

from playground.lm.loading import ModelLoadError

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class AdapterSpec:
    """What an adapter directory declares (from peft's adapter_config.json)."""

    path: Path
    rank: int
    scaling: float  # s = lora_alpha / r   (or lora_alpha / sqrt(r) with rsLoRA)
    target_modules: tuple[str, ...]
    base_model: str


def read_adapter_config(path: Path) -> AdapterSpec:
    """Parse and check adapter_config.json; refuse what this engine cannot apply exactly."""
    cfg_file, weights = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not path.is_dir():
        raise ModelLoadError(f"{path} is not a directory: expected an adapter directory with {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    if not cfg_file.is_file():
        raise ModelLoadError(f"{path} has no {ADAPTER_CONFIG}: expected a peft LoRA adapter directory")
    if not weights.is_file():
        found = [p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth")]
        extra = f" (found only pickle weights {found}; the playground loads safetensors only)" if found else ""
        raise ModelLoadError(f"{path} has no {ADAPTER_WEIGHTS}{extra}")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{cfg_file} is not valid JSON: {err}") from None
    problems = []
    if cfg.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type is {cfg.get('peft_type')!r}, expected 'LORA'")
    for key in ("use_dora", "fan_in_fan_out"):
        if cfg.get(key):
            problems.append(f"{key}=true is not supported")
    for key in ("rank_pattern", "alpha_pattern", "modules_to_save", "layer_replication"):
        if cfg.get(key):
            problems.append(f"{key} is not supported")
    if cfg.get("bias", "none") != "none":
        problems.append("bias must be 'none'")
    rank, alpha = cfg.get("r"), cfg.get("lora_alpha")
    targets = cfg.get("target_modules")
    if not isinstance(rank, int) or rank <= 0 or not isinstance(alpha, (int, float)):
        problems.append("r must be a positive integer and lora_alpha a number")
    if isinstance(targets, str) or not targets:
        problems.append("target_modules must be a list of module names")
    if problems:
        raise ModelLoadError(f"{cfg_file}: " + "; ".join(problems))
    scaling = alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank
    return AdapterSpec(path, rank, float(scaling), tuple(sorted(targets)), str(cfg.get("base_model_name_or_path") or ""))


class RoutedLoRALinear(nn.Module):
    """y = W x + Σ_a scale_a[row] · s_a · B_a (A_a x): a base linear layer plus per-row LoRA deltas."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.lora_A: dict[str, torch.Tensor] = {}  # adapter name -> A, shape [r, in_features]
        self.lora_B: dict[str, torch.Tensor] = {}  # adapter name -> s·B, shape [out_features, r]
        # Set by AdapterSet.routing for one forward call: adapter name -> per-row scale, shape [batch, 1, 1].
        self.route: dict[str, torch.Tensor] = {}

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        for name, row_scale in self.route.items():
            # Δy = scale_row · s · B (A x); rows with scale 0 are untouched base rows.
            delta = (x @ self.lora_A[name].T) @ self.lora_B[name].T
            y = y + row_scale.to(delta.dtype) * delta
        return y


class AdapterSet:
    """The adapters loaded onto one base model. Add adapters once; route rows per forward call."""

    def __init__(self, model: nn.Module, base_names: Sequence[str] = ()) -> None:
        self.model = model
        self.base_names = {n for n in base_names if n}  # names an adapter may declare as its base
        self.specs: dict[str, AdapterSpec] = {}
        self._wrapped: dict[str, RoutedLoRALinear] = {}
        self.version = 0  # bumped by every `add`: decoders built from the modules before it are stale

    def _wrap(self, module_name: str) -> RoutedLoRALinear:
        if module_name in self._wrapped:
            return self._wrapped[module_name]
        parent_name, _, child = module_name.rpartition(".")
        parent = self.model.get_submodule(parent_name) if parent_name else self.model
        layer = getattr(parent, child)
        if not isinstance(layer, nn.Linear):
            raise ModelLoadError(f"module {module_name} is {type(layer).__name__}; LoRA here supports nn.Linear only")
        wrapped = RoutedLoRALinear(layer)
        setattr(parent, child, wrapped)
        self._wrapped[module_name] = wrapped
        return wrapped

    def _check_base(self, name: str, spec: AdapterSpec) -> None:
        if spec.base_model and self.base_names and spec.base_model not in self.base_names:
            raise ModelLoadError(
                f"adapter {name!r} ({spec.path}) was trained on base {spec.base_model!r}, "
                f"but the loaded base is {sorted(self.base_names)}"
            )

    def add(self, name: str, path: Path) -> AdapterSpec:
        """Load adapter `name` from a peft directory; check that it fits this base model."""
        spec = read_adapter_config(path)
        self._check_base(name, spec)
        tensors = load_file(str(path / ADAPTER_WEIGHTS), device="cpu")
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            # peft key: base_model.model.<module path>.lora_A.weight  (or .lora_A.<adapter>.weight)
            parts = key.split(".")
            if "lora_A" in parts or "lora_B" in parts:
                idx = parts.index("lora_A") if "lora_A" in parts else parts.index("lora_B")
                module = ".".join(p for p in parts[:idx] if p)
                module = module.removeprefix("base_model.model.")
                pairs.setdefault(module, {})[parts[idx]] = value
            else:
                raise ModelLoadError(f"{path / ADAPTER_WEIGHTS}: unexpected tensor {key!r} (only LoRA A/B matrices are supported)")
        if not pairs:
            raise ModelLoadError(f"{path / ADAPTER_WEIGHTS} holds no LoRA matrices")
        staged = self._stage(name, path, spec, pairs)
        for module_name, (a, b) in staged.items():  # all checks passed: install
            layer = self._wrap(module_name)
            layer.lora_A[name], layer.lora_B[name] = a, b
        self.specs[name] = spec
        self.version += 1
        return spec

    def _stage(self, name: str, path: Path, spec: AdapterSpec, pairs: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        staged = {}
        modules = dict(self.model.named_modules())
        for module_name, ab in pairs.items():
            layer = modules.get(module_name)
            if layer is None or not isinstance(layer, (nn.Linear, RoutedLoRALinear)):
                raise ModelLoadError(f"adapter {name!r} ({path}) targets {module_name}, which is not a linear layer of the loaded base")
            if set(ab) != {"lora_A", "lora_B"}:
                raise ModelLoadError(f"adapter {name!r} ({path}): {module_name} lacks lora_A or lora_B")
            a, b = ab["lora_A"], ab["lora_B"]
            if a.shape != (spec.rank, layer.in_features) or b.shape != (layer.out_features, spec.rank):
                raise ModelLoadError(
                    f"adapter {name!r} ({path}): {module_name} has A{tuple(a.shape)} B{tuple(b.shape)}, expected "
                    f"A({spec.rank}, {layer.in_features}) B({layer.out_features}, {spec.rank}) for rank {spec.rank}"
                )
            dtype = layer.weight.dtype
            staged[module_name] = (a.to(dtype), (b * spec.scaling).to(dtype))
        return staged

    @contextmanager
    def routing(self, rows: Sequence[tuple[str | None, float]]) -> Iterator[None]:
        """For one forward call: row i uses adapter rows[i][0] (None = base) at scale rows[i][1]."""
        scales: dict[str, torch.Tensor] = {}
        for i, (name, scale) in enumerate(rows):
            if name is None or scale == 0.0:
                continue
            if name not in self.specs:
                raise KeyError(f"unknown adapter {name!r}; loaded: {sorted(self.specs)}")
            scales.setdefault(name, torch.zeros(len(rows), 1, 1))[i] = scale
        # object.__setattr__: a plain attribute, without nn.Module's parameter/buffer bookkeeping (hot path).
        for layer in self._wrapped.values():
            object.__setattr__(layer, "route", {n: s for n, s in scales.items() if n in layer.lora_A})
        try:
            yield
        finally:
            for layer in self._wrapped.values():
                object.__setattr__(layer, "route", {})
