""""Local path or Hub id?" decided in one place for every loader (base models, adapters, judges, embedders,
diffusers pipelines).
"""
from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "owner/name" (or a bare "name")


def is_local(source: str | Path) -> bool:
    """A path: an existing file or folder, or text that starts like one (/, ., ~) or has more than one '/'."""
    text = str(source)
    return isinstance(source, Path) or text.startswith((".", "/", "~")) or text.count("/") > 1 or Path(text).expanduser().exists()


def local_or_hub(source: str | Path) -> Path | str:
    """The expanded local Path, or the Hub id as given; ValueError when it is neither."""
    if is_local(source):
        return Path(str(source)).expanduser()
    text = str(source).strip()
    if not HUB_ID.match(text):
        raise ValueError(f"{text!r} is neither an existing directory nor a Hub id of the form 'owner/name'")
    return text
