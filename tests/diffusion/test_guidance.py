"""Classifier-free guidance: the CFG math on a tiny random UNet, determinism, validation, the shipped model."""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel
from matplotlib.figure import Figure

from playground.diffusion import guidance as G
from playground.cli import guidance as guidance_cli
from playground.cli.errors import run_command
from playground.diffusion.digits import NULL_CLASS
from playground.settings.request import SCHEDULERS
from playground.settings.validation import InputError, guidance_settings


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Test batches are tiny; one thread is as fast and stays fast when other jobs share the CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_unet() -> UNet2DModel:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, num_class_embeds=NULL_CLASS + 1,
    )
    return unet.eval().requires_grad_(False)


def _inputs(n: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn((n, 1, 16, 16), generator=gen), torch.tensor(500), torch.arange(n) % 10


@torch.no_grad()
def test_w0_is_the_unconditional_prediction(tiny_unet: UNet2DModel) -> None:
    x, t, y = _inputs()
    direct = tiny_unet(x, t, class_labels=torch.full_like(y, NULL_CLASS)).sample
    torch.testing.assert_close(G.guided_eps(tiny_unet, x, t, y, 0.0), direct, atol=1e-5, rtol=0)
    assert torch.equal(G.cfg_combine(direct, direct + 1.0, 0.0), direct)  # exactly ε_uncond


@torch.no_grad()
def test_w1_is_the_conditional_prediction(tiny_unet: UNet2DModel) -> None:
    x, t, y = _inputs()
    direct = tiny_unet(x, t, class_labels=y).sample
    torch.testing.assert_close(G.guided_eps(tiny_unet, x, t, y, 1.0), direct, atol=1e-5, rtol=0)


def test_cfg_extrapolates_linearly() -> None:
    u, c = torch.zeros(3), torch.ones(3)
    assert torch.equal(G.cfg_combine(u, c, 4.0), torch.full((3,), 4.0))


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_same_seed_same_images(tiny_unet: UNet2DModel, scheduler: str) -> None:
    s = guidance_settings(digit=7, guidance_scale=3.0, num_samples=3, steps=4, scheduler=scheduler, seed=11)
    a, b = G.sample(s, unet=tiny_unet), G.sample(s, unet=tiny_unet)
    assert np.array_equal(a.images, b.images) and np.isfinite(a.images).all()
    other = G.sample(replace(s, seed=12), unet=tiny_unet)
    assert not np.array_equal(a.images, other.images)


def test_progress_frames(tiny_unet: UNet2DModel) -> None:
    res = G.sample(guidance_settings(num_samples=2, steps=6), unet=tiny_unet, progress_frames=3)
    assert len(res.progress) == 3 and res.progress[0].shape == (2, 1, 16, 16)
    assert res.progress_timesteps == sorted(res.progress_timesteps, reverse=True)


@pytest.mark.parametrize(
    "field, value",
    [("digit", 10), ("digit", -1), ("digit", 2.5), ("guidance_scale", math.nan), ("guidance_scale", 21.0),
     ("guidance_scale", -0.1), ("num_samples", 0), ("num_samples", 65), ("steps", 0), ("steps", 201),
     ("scheduler", "heun"), ("seed", -1)],
)
def test_bad_settings_raise_naming_the_parameter(field: str, value: object) -> None:
    with pytest.raises(InputError, match=field):
        guidance_settings(**{field: value})


def test_cancel_stops_within_one_step(tiny_unet: UNet2DModel) -> None:
    calls = []
    with pytest.raises(InputError, match="cancelled"):
        G.sample(guidance_settings(num_samples=2, steps=50), unet=tiny_unet, should_stop=lambda: calls.append(1) or len(calls) > 3)
    assert len(calls) == 4


def test_bad_scales_raise() -> None:
    for bad in ("", "1,x", "0,30", ",".join(["1"] * 13)):
        with pytest.raises(ValueError, match="scales|guidance_scale"):
            G.parse_scales(bad)
    assert G.parse_scales("0, 1,2.5") == [0.0, 1.0, 2.5]


def test_metrics_on_identical_and_different_images() -> None:
    same = np.zeros((4, 1, 16, 16), np.float32)
    assert G.diversity(same) == 0.0 and G.feature_spread(same) == 0.0
    mixed = np.stack([same[0] - 1.0, same[0] + 1.0])
    assert G.diversity(mixed) == pytest.approx(2.0 * 16)  # √(256 · 2²)


def test_sweep_on_shipped_model_accuracy_rises_with_w() -> None:
    rows = G.sweep(guidance_settings(digit=3, num_samples=16, steps=10, seed=0, scheduler="ddim"), [0.0, 4.0])
    assert [r["scale"] for r in rows] == [0.0, 4.0]
    assert {"class_accuracy", "class_prob_mean", "diversity", "feature_spread", "seconds"} <= rows[0].keys()
    assert rows[1]["class_accuracy"] > rows[0]["class_accuracy"]
    assert rows[1]["diversity"] < rows[0]["diversity"]


def test_grid_image_and_plot() -> None:
    images = np.linspace(-1, 1, 5 * 256, dtype=np.float32).reshape(5, 1, 16, 16)
    grid = G.grid_image(images, nrow=3, scale=2)
    assert grid.dtype == np.uint8 and grid.shape == (2 * (2 * 17 + 1), 2 * (3 * 17 + 1))
    rows = [{"scale": w, "class_accuracy": 0.5, "class_prob_mean": 0.5, "diversity": 9.0, "feature_spread": 3.0}
            for w in (0.0, 2.0)]
    assert isinstance(G.plot_sweep(rows), Figure)


def test_pipeline_missing_path_gives_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="src: no local pipeline directory"):
        G.generate_with_pipeline(str(tmp_path / "nope"), "a cat", guidance_scale=5.0, steps=2)
    with pytest.raises(ValueError, match="model_index.json"):
        G.generate_with_pipeline(str(tmp_path), "a cat", guidance_scale=5.0, steps=2)
    with pytest.raises(ValueError, match="guidance_scale"):
        G.generate_with_pipeline(str(tmp_path), "a cat", guidance_scale=25.0)


def test_pipeline_kwargs_pass_guidance_only_when_accepted() -> None:
    def with_cfg(prompt, num_inference_steps=1, guidance_scale=7.5, generator=None): ...
    def without_cfg(prompt, num_inference_steps=1): ...
    assert G.pipeline_kwargs(with_cfg, "p", 3.0, 4, 0, 1)["guidance_scale"] == 3.0
    assert set(G.pipeline_kwargs(without_cfg, "p", 3.0, 4, 0, 1)) == {"prompt", "num_inference_steps"}


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    guidance_cli.add_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["guidance", *argv])
    return run_command(lambda: args.func(args))


def test_cli_writes_json_grid_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "g.json"
    assert _cli("--digit", "5", "--scales", "0,3", "--samples", "3", "--steps", "3", "--out", str(out)) == 0
    rows = json.loads(out.read_text())
    assert [r["scale"] for r in rows] == [0.0, 3.0] and "diversity" in rows[0]
    assert (tmp_path / "g.png").stat().st_size > 0 and (tmp_path / "g_plot.png").stat().st_size > 0
    assert "class_accuracy" in capsys.readouterr().out


def test_cli_bad_input_prints_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _cli("--digit", "12", "--out", str(tmp_path / "g.json")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "digit" in err[0]
