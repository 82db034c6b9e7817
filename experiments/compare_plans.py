"""Run every MiniLM -> Rotten Tomatoes plan config and tabulate test accuracy and wall time.

    python -m experiments.compare_plans --workdir=runs/plans [--plans=finetune,progressive]
        [--overrides="--config.total_steps=200"]

Each plan runs as its own `python -m tlx.train` process (so wall time includes start-up and
compilation, as a user sees it) in WORKDIR/<plan>. Finished plans are not rerun; a killed one
resumes. Writes WORKDIR/results.md and WORKDIR/results.json.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", "runs/plans", "Folder for one run per plan.")
_PLANS = flags.DEFINE_list(
    "plans", ["feature_extraction", "freeze_to", "finetune", "progressive"], "Plans to run."
)
_OVERRIDES = flags.DEFINE_string("overrides", "", "Extra --config.* flags for every run.")


def run_plan(plan: str, workdir: Path, overrides: list[str]) -> dict:
    run_dir = workdir / plan
    timing = run_dir / "wall_seconds.json"
    if not (run_dir / "summary.json").exists() or not timing.exists():
        started = time.perf_counter()
        command = [sys.executable, "-m", "tlx.train", f"--config=configs/minilm_rt_{plan}.py"]
        subprocess.run([*command, f"--workdir={run_dir}", *overrides], check=True)
        timing.write_text(json.dumps({"wall_seconds": time.perf_counter() - started}))
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "plan": summary["plan"],
        "config": f"configs/minilm_rt_{plan}.py",
        "test_accuracy": summary["results"]["test"]["accuracy"],
        "validation_accuracy": summary["results"]["validation"]["accuracy"],
        "train_seconds": summary["train_seconds_this_run"],
        "wall_seconds": json.loads(timing.read_text())["wall_seconds"],
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| plan | config | test accuracy | validation accuracy | wall time |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['plan']} | `{r['config']}` | {r['test_accuracy']:.4f} | "
            f"{r['validation_accuracy']:.4f} | {r['wall_seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    workdir = Path(_WORKDIR.value)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = [run_plan(p, workdir, shlex.split(_OVERRIDES.value)) for p in _PLANS.value]
    (workdir / "results.json").write_text(json.dumps(rows, indent=1))
    table = markdown(rows)
    (workdir / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    app.run(main)
