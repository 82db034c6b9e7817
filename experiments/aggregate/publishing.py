"""Publishing an aggregate under experiments/results/: the table, CSV and plots headed by their
provenance, and the study's records file (the finished cells' summaries, curves and configs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def publish(result: dict[str, Any], out: str | Path, command: str, machine: str) -> list[Path]:
    """Copy the tables and plots to OUT.md, OUT.csv, OUT_<plot>.png, the Markdown headed by the
    command, the date, the machine and the commit that made it."""
    import datetime
    import shutil

    from tlx.machine import git_commit

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    commit = git_commit()
    header = [
        f"# {out.name}",
        "",
        f"Made by `{command}` on {datetime.date.today().isoformat()} (aggregated at tlx commit "
        f"{commit}), on {machine}.",
        "",
    ]
    if result.get("sweep_command"):
        header += [f"Cells trained by `{result['sweep_command']}`.", ""]
    if result.get("rows_from"):
        joined = ", ".join(f"`{s}`" for s in result["rows_from"])
        header += [f"Rows joined from {joined} (their cells stay in their own records).", ""]
    written = [out.with_suffix(".md"), out.with_suffix(".csv")]
    written[0].write_text("\n".join(header) + "\n" + result["markdown"])
    shutil.copyfile(result["files"]["csv"], written[1])
    for name in ("curves", "bars", "against"):
        if name in result["files"]:
            source = result["files"][name]
            suffix = source.stem if name == "against" else name  # against_<key>
            target = out.parent / f"{out.name}_{suffix}.png"
            shutil.copyfile(source, target)
            written.append(target)
    return written + publish_records(result, out)


def publish_records(result: dict[str, Any], out: str | Path) -> list[Path]:
    """Merge the finished cells' records and sweep.json into OUT_records.jsonl.gz (see
    experiments.aggregate.records), so the numbers can be re-aggregated, and the sweep resumed
    (experiments.restore_cells), from a fresh checkout. Adds and replaces only: records of cells
    absent from this aggregate are kept. Nothing is written when no cell has finished. Rows
    joined from another study (--rows_from) stay in that study's records."""
    from experiments.aggregate.records import cell_record, records_path, write_records

    cells = {c.name: cell_record(c) for c in result["cells"]
             if c.status == "finished" and not c.source}  # fmt: skip
    if not cells:
        return []
    return [write_records(records_path(out), result["sweep"], result["workdir"], cells)]
