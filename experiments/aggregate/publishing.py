"""Publishing an aggregate under experiments/results/: the table, CSV and plots headed by their
provenance, and the finished cells' records."""

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


def publish_records(result: dict[str, Any], out: Path) -> list[Path]:
    """Copy sweep.json and each finished cell's records to OUT_cells/, so the numbers can be
    re-aggregated, and the sweep resumed (experiments.restore_cells), from a fresh checkout.
    Adds and overwrites only: records of cells absent from this workdir are kept."""
    import shutil

    from experiments.restore_cells import RECORD_FILES, records_dir

    root, target = Path(result["root"]), records_dir(out)
    written: list[Path] = []
    if target.exists() and target.resolve() == root.resolve():  # re-aggregated from the records
        return written
    for name in (r["cell"] for r in result["rows"] if r["status"] == "finished"):
        for file in RECORD_FILES:
            if (root / name / file).exists():
                (target / name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / name / file, target / name / file)
                written.append(target / name / file)
    if written and (root / "sweep.json").exists():
        shutil.copyfile(root / "sweep.json", target / "sweep.json")
        written.append(target / "sweep.json")
    return written
