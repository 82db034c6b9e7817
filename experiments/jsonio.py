"""Reading and writing the experiments' JSON records: a missing or half-written file reads as
nothing, and a rewritten one is replaced whole."""

from __future__ import annotations

import json
from pathlib import Path


def read_json(path: str | Path) -> dict | None:
    """The file's JSON, or None where it is missing or cut short."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_atomic(path: Path, text: str) -> None:
    """Write `text` beside `path` and move it into place, so no reader sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
