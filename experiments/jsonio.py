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


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` (text or bytes) beside `path` and move it into place, so no reader sees half
    a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    tmp.replace(path)
