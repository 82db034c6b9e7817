r"""Put a published sweep's finished cells back into a fresh workdir, so the sweep skips them.

Workdirs (runs/...) are not committed and a fresh checkout has none, so a sweep longer than one
session would start over. `experiments.aggregate --out=PREFIX` therefore also commits the study's
records, PREFIX_records.jsonl.gz (each finished cell's config, summary and metrics; see
experiments.aggregate.records). This writes them back as the cells' config.json, metrics.jsonl and
summary.json:

    python -m experiments.restore_cells --published=experiments/results/ablation_minilm_rt \
        --workdir=runs/ablation_rt

(--published may also name the records file itself.) Cells published before records were kept
exist only as rows of PREFIX.csv. For those (and only when there is no records file: the CSV
also lists the rows `aggregate --rows_from` took from other studies, which are not this sweep's
cells) it writes a summary.json rebuilt from the row (final
accuracy and loss per split, seconds, examples/s, peak memory, the machine), marked
"restored_from": they count in the tables again but have no learning curve. Cells already in the
workdir (a summary.json there) are never touched.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

from absl import app, flags

from experiments.aggregate.cells import TRAINED_COLUMNS
from experiments.aggregate.records import SUFFIX, RecordsError, records_path, restore_records
from tlx import cli


def _number(text: str) -> float | int | None:
    if text == "":
        return None
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def _provenance(csv_path: Path) -> str:
    """The CSV and the commit that last wrote it: the CSV itself is rewritten by the next
    aggregate, so the path alone would not say where the numbers came from."""
    try:
        commit = subprocess.run(
            ["git", "log", "-1", "--format=%h", "--", csv_path.name],
            cwd=csv_path.parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{csv_path} at commit {commit}" if commit else str(csv_path)


def published_machine(md_path: Path) -> str:
    """The machine named in PREFIX.md's header ("Made by `...` on DATE (...), on MACHINE."),
    for CSVs written before each row named its own; '' if there is none."""
    try:
        text = md_path.read_text()
    except OSError:
        return ""
    found = re.search(r"^Made by `.*`.*, on (.+)\.$", text, flags=re.MULTILINE)
    return found.group(1) if found else ""


def summary_from_row(row: dict[str, str], source: str, machine: str = "") -> dict:
    """A summary.json with the fields `aggregate` reads, from one published CSV row."""
    results: dict[str, dict[str, float]] = {}
    for column, text in row.items():
        for metric in ("accuracy", "loss"):
            if column.endswith(f"_{metric}") and text != "":
                results.setdefault(column[: -len(metric) - 1], {})[metric] = float(text)
    summary = {
        "restored_from": source,  # no metrics.jsonl: the final numbers only
        "steps": _number(row["steps"]),
        "resumed_from_step": _number(row.get("resumed_from_step", "")),
        "train_examples": _number(row.get("train_examples", "")),
        "train_seconds_this_run": _number(row.get("train_seconds", "")),
        # The published value is already the mean over train windows, as aggregate computes it.
        "examples_per_sec": _number(row.get("examples_per_sec", "")),
        "peak_memory_bytes": _number(row.get("peak_memory_bytes", "")),
        "machine": row.get("machine") or machine or None,
        "results": results,
    }
    trained = {k: _number(row.get(k, "")) for k in TRAINED_COLUMNS}
    trained = {k: v for k, v in trained.items() if v is not None}  # e.g. step memory: newer runs
    if trained:
        summary["trained"] = trained
    return {k: v for k, v in summary.items() if v is not None}


def restore(published: str | Path, workdir: str | Path) -> dict[str, list[str]]:
    """Fill `workdir` from PREFIX_records.jsonl.gz, else from finished rows of PREFIX.csv.

    The records hold every finished cell of the sweep; the CSV is read only without them, since
    its other rows are other studies' (`--rows_from`) and belong in their own workdirs."""
    published, workdir = Path(published), Path(workdir)
    if published.name.endswith(SUFFIX):  # the records file itself
        published = published.with_name(published.name.removesuffix(SUFFIX))
    csv_path = published.with_name(published.name + ".csv")
    records = records_path(published)
    if not csv_path.exists() and not records.exists():
        raise SystemExit(
            f"restore_cells: neither {csv_path} nor {records} exists; pass the --out prefix that "
            "experiments.aggregate published, e.g. experiments/results/ablation_minilm_rt"
        )
    done: dict[str, list[str]] = {"records": [], "csv": [], "kept": []}
    workdir.mkdir(parents=True, exist_ok=True)
    if records.exists():
        try:
            done.update(restore_records(records, workdir))
        except RecordsError as e:
            raise SystemExit(f"restore_cells: {e}") from None
    if csv_path.exists() and not records.exists():
        source = _provenance(csv_path)
        machine = published_machine(published.with_name(published.name + ".md"))
        seen = {*done["records"], *done["kept"]}
        with csv_path.open() as f:
            for row in csv.DictReader(f):
                target = workdir / row["cell"]
                if row.get("status") != "finished" or row["cell"] in seen:
                    continue
                if (target / "summary.json").exists():
                    done["kept"].append(row["cell"])
                    continue
                target.mkdir(exist_ok=True)
                summary = summary_from_row(row, source, machine)
                (target / "summary.json").write_text(json.dumps(summary, indent=1))
                done["csv"].append(row["cell"])
    return done


def define_flags() -> None:
    flags.DEFINE_string("published", None, "The --out prefix aggregate published to.")
    flags.DEFINE_string("workdir", None, "The sweep's workdir to fill.")
    flags.mark_flags_as_required(["published", "workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    done = restore(flags.FLAGS.published, flags.FLAGS.workdir)
    print(
        f"{flags.FLAGS.workdir}: {len(done['records'])} cells from records, "
        f"{len(done['csv'])} rebuilt from the CSV (no curves), "
        f"{len(done['kept'])} already there and kept"
    )


if __name__ == "__main__":
    define_flags()
    cli.run(main, program="experiments.restore_cells")
