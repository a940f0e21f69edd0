"""On the shipped model: the `openai` client gets the CLI's realigned answer (`generate --json`) for the same seed,
streamed and not."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from playground import registry
from tests.api.test_openai import launch_api

ADAPTER = registry.DEFAULT_ADAPTER
SETTINGS = dict(prompt="Give me a tip for a rainy day.", kl_strength=0.2, temperature=0.7, top_p=0.95, max_tokens=24, seed=5)


@pytest.mark.slow  # a CLI run and an app on the shipped model: 20–160 s here, depending on the machine's load
@pytest.mark.skipif(not registry.get_adapter(ADAPTER).installed, reason=f"{ADAPTER} is not installed")
def test_openai_client_gets_the_clis_realigned_text(shipped_tokenizer_dir):
    import openai

    from playground.service import Playground

    s = SETTINGS
    cli = subprocess.run([sys.executable, "-m", "playground", "generate", "--prompt", s["prompt"], "--adapter", ADAPTER,
                          "--kl-strength", str(s["kl_strength"]), "--temperature", str(s["temperature"]),
                          "--top-p", str(s["top_p"]), "--max-new-tokens", str(s["max_tokens"]), "--seed", str(s["seed"]),
                          "--json"], capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-2000:]
    want = json.loads(cli.stdout)["realigned"]
    demo, url = launch_api(Playground.from_registry(adapters=[ADAPTER]))
    try:
        oai = openai.OpenAI(base_url=url + "v1", api_key="unused", max_retries=0, timeout=120)
        knobs = dict(model=ADAPTER, messages=[{"role": "user", "content": s["prompt"]}], temperature=s["temperature"],
                     top_p=s["top_p"], max_tokens=s["max_tokens"], seed=s["seed"], extra_body={"kl_strength": s["kl_strength"]})
        whole = oai.chat.completions.create(**knobs)
        chunks = list(oai.chat.completions.create(**knobs, stream=True))
    finally:
        demo.close()
    assert whole.choices[0].message.content == want["text"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want["text"]
    assert whole.usage.completion_tokens == want["tokens"]
    ext = whole.model_extra["playground"]
    assert ext["lambda"] == pytest.approx(want["settings"]["lambda"])
    assert ext["kl_to_base"] == pytest.approx(want["kl_to_base"], abs=1e-6)
