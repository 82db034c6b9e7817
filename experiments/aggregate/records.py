"""A published study's records: one file, PREFIX_records.jsonl.gz, that aggregation and
resumption read.

`python -m experiments.aggregate --out=PREFIX` writes it beside PREFIX.md and PREFIX.csv: gzip'd
JSON lines, a header first, then one line per finished cell, sorted by name:

    {"records": 1, "sweep": <WORKDIR/sweep.json, or null>, "workdir": "runs/ablation_rt"}
    {"cell": NAME, "overrides": {...}, "config": <run_folder.read_config, or null>,
     "summary": <summary.json>, "curve": [<metrics.jsonl's records>]}

Keys are sorted and the gzip header holds neither a time nor a file name, so the same records
always publish to the same bytes. Publishing again merges: cells are added or replaced, never
removed, and the sweep's list of cells keeps the earlier ones (as WORKDIR/sweep.json does).

`python -m experiments.aggregate --records=FILE` redoes a table from the file alone;
`python -m experiments.restore_cells` writes its cells back into a workdir, so the sweep skips them.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.aggregate.cells import CellData, sweep_cell
from experiments.jsonio import write_atomic
from tlx import run_folder

FORMAT = 1
SUFFIX = "_records.jsonl.gz"


class RecordsError(ValueError):
    """A path that is not a readable records file; the message says what was expected."""


def records_path(prefix: str | Path) -> Path:
    """Where `aggregate --out=prefix` keeps the study's records."""
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + SUFFIX)


def _expected() -> str:
    return (
        f"expected a study's records file, PREFIX{SUFFIX}, as `python -m experiments.aggregate "
        f"--out=PREFIX` writes it (e.g. experiments/results/ablation_minilm_rt{SUFFIX})"
    )


def _is_cell_name(name: Any) -> bool:
    """One folder name: restoring a cell must not write outside the workdir."""
    return isinstance(name, str) and name not in ("", ".", "..") and not {"/", "\\"} & set(name)


def read_records(path: str | Path) -> tuple[dict, dict[str, dict]]:
    """(the header, {cell name: its record}); raises RecordsError naming what was expected."""
    path = Path(path)
    if not path.name.endswith(SUFFIX):
        raise RecordsError(f"{path} is not named *{SUFFIX}: {_expected()}")
    if not path.is_file():
        found = "is a folder" if path.is_dir() else "does not exist"
        raise RecordsError(f"{path} {found}: {_expected()}")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordsError(f"{path} cannot be read ({e}): {_expected()}") from None
    header = lines[0] if lines else None
    if not isinstance(header, dict) or header.get("records") != FORMAT:
        raise RecordsError(
            f'{path} does not start with a records header ({{"records": {FORMAT}, ...}}): '
            + _expected()
        )
    cells = {}
    for number, record in enumerate(lines[1:], start=2):
        if not isinstance(record, dict) or not _is_cell_name(record.get("cell")):
            raise RecordsError(f"{path}, line {number}: not a cell's record (no folder name)")
        if not isinstance(record.get("summary"), dict):
            raise RecordsError(f"{path}, line {number}: cell {record['cell']!r} has no summary")
        cells[record["cell"]] = record
    return header, cells


def encode(header: Mapping, cells: Mapping[str, Mapping]) -> bytes:
    """The file's bytes: sorted keys, cells sorted by name, gzip without a time or a name."""
    lines = [header, *(cells[name] for name in sorted(cells))]
    text = "".join(json.dumps(x, sort_keys=True, separators=(",", ":")) + "\n" for x in lines)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as f:
        f.write(text.encode("utf-8"))
    return buffer.getvalue()


def merge_sweeps(old: dict | None, new: dict | None) -> dict | None:
    """`new` sweep.json, after the cells (and keys) only `old` lists."""
    if old is None or new is None:
        return new if new is not None else old
    names = {c["name"] for c in new.get("cells", [])}
    earlier = [c for c in old.get("cells", []) if c["name"] not in names]
    keys = list(dict.fromkeys([*old.get("keys", []), *new.get("keys", [])]))
    return {**new, "cells": earlier + list(new.get("cells", [])), "keys": keys}


def write_records(
    path: str | Path, sweep: dict | None, workdir: str | None, cells: Mapping[str, dict]
) -> Path:
    """Merge `cells` ({name: cell_record}) and `sweep` into the records file at `path`."""
    path = Path(path)
    header = {"records": FORMAT, "sweep": sweep, "workdir": workdir}
    if path.exists():
        old, old_cells = read_records(path)
        cells = {**old_cells, **cells}
        header["sweep"] = merge_sweeps(old.get("sweep"), sweep)
        header["workdir"] = workdir or old.get("workdir")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, encode(header, cells))
    return path


def cell_record(cell: CellData) -> dict:
    return {
        "cell": cell.name,
        "overrides": cell.overrides,
        "config": cell.config,
        "summary": cell.summary,
        "curve": cell.metrics,
    }


def load_records(path: str | Path) -> tuple[dict, dict, list[CellData]]:
    """(the header, then as cells.load_cells reads a sweep's folder: sweep.json or a stand-in,
    the cells in its order). A cell the sweep lists without a record is missing."""
    header, records = read_records(path)
    described = header.get("sweep")
    if described is None:
        names = sorted(records)
        keys = dict.fromkeys(k for n in names for k in records[n].get("overrides") or {})
        described = {
            "keys": list(keys),
            "cells": [{"name": n, "overrides": records[n].get("overrides") or {}} for n in names],
        }
    cells = []
    for entry in described.get("cells", []):
        record = records.get(entry["name"], {})
        curve = record.get("curve") or []
        cells.append(sweep_cell(entry, record.get("summary"), curve, record.get("config")))
    return header, described, cells


def restore_records(path: str | Path, workdir: str | Path) -> dict[str, list[str]]:
    """Write each recorded cell into WORKDIR/<cell> (config.json, metrics.jsonl, summary.json,
    the summary last) unless that folder already has a summary.json: {"records", "kept"}."""
    _, records = read_records(path)
    workdir = Path(workdir)
    done: dict[str, list[str]] = {"records": [], "kept": []}
    for name in sorted(records):
        record, target = records[name], workdir / name
        if (target / run_folder.SUMMARY).exists():
            done["kept"].append(name)
            continue
        target.mkdir(parents=True, exist_ok=True)
        if record.get("config") is not None:
            write_atomic(target / run_folder.CONFIG, json.dumps(record["config"], indent=1))
        if record.get("curve"):
            lines = "".join(json.dumps(r) + "\n" for r in record["curve"])
            write_atomic(target / run_folder.METRICS, lines)
        write_atomic(target / run_folder.SUMMARY, json.dumps(record["summary"], indent=1))
        done["records"].append(name)
    return done
