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


def read_jsonl(path: Path) -> list[dict]:
    """One record per line; a line cut by a killed run is skipped, a missing file is empty."""
    records = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return records
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a killed run
    return records


def write_atomic(path: Path, text: str) -> None:
    """Write `text` beside `path` and move it into place, so no reader sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
