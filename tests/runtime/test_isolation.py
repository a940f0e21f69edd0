"""Isolation: concurrent users alternating adapters, λ and mode get exactly the serial answers."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.test_app import GOOD, app_url, client  # noqa: F401  (fixtures)

SETTINGS = [
    dict(adapter=adapter, kl=kl, mode=mode, message=message)
    for adapter, kl in (("a", 0.05), ("b", 0.5), ("a", 0.4), ("b", 0.1))
    for mode in ("logits", "weights")
    for message in ("Tell me about cats.", "What is rain?")
]  # 16 distinct settings


def answers_of(result) -> list[str]:
    """Each column's last answer without its readout line (which holds timings)."""
    out = []
    for column in result[:3]:
        content = column[-1]["content"]
        text = content if isinstance(content, str) else "".join(part.get("text", "") for part in content)
        out.append(text.split("<sub>")[0].strip())
    return out


def test_concurrent_clients_match_serial_reference(app_url):
    from gradio_client import Client

    def ask(setting: dict) -> list[str]:
        client = Client(app_url, verbose=False)  # a fresh session per user
        args = {**GOOD, **setting, "temperature": 0.0, "max_new": 12}
        return answers_of(client.predict(*args.values(), api_name="/chat"))

    serial = [ask(s) for s in SETTINGS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(ask, SETTINGS * 2))
    wrong = [(SETTINGS[i % len(SETTINGS)], serial[i % len(SETTINGS)], got) for i, got in enumerate(concurrent)
             if got != serial[i % len(SETTINGS)]]
    assert not wrong, f"{len(wrong)} of {len(concurrent)} differ, e.g. {wrong[:2]}"
    assert len({tuple(a) for a in serial}) > 4  # the settings really differ

