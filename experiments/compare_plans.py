"""Run a family of plan configs (configs/<family>_<plan>.py) and tabulate accuracy and wall time.

    python -m experiments.compare_plans --workdir=runs/plans [--plans=finetune,progressive]
        [--overrides="--config.total_steps=200"]
    python -m experiments.compare_plans --family=mnv2_fmnist --workdir=runs/mnv2_plans \
        --plans=feature_extraction,freeze_to,finetune,progressive,scratch

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

from absl import flags

from tlx import cli

_WORKDIR = flags.DEFINE_string("workdir", "runs/plans", "Folder for one run per plan.")
_PLANS = flags.DEFINE_list(
    "plans", ["feature_extraction", "freeze_to", "finetune", "progressive"], "Plans to run."
)
_FAMILY = flags.DEFINE_string(
    "family", "minilm_rt", "Config family: runs configs/<family>_<plan>.py for each plan."
)
_OVERRIDES = flags.DEFINE_string("overrides", "", "Extra --config.* flags for every run.")


def run_plan(family: str, plan: str, workdir: Path, overrides: list[str]) -> dict:
    run_dir = workdir / plan
    timing = run_dir / "wall_seconds.json"
    config = f"configs/{family}_{plan}.py"
    if not (run_dir / "summary.json").exists() or not timing.exists():
        started = time.perf_counter()
        command = [sys.executable, "-m", "tlx.train", f"--config={config}"]
        subprocess.run([*command, f"--workdir={run_dir}", *overrides], check=True)
        timing.write_text(json.dumps({"wall_seconds": time.perf_counter() - started}))
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "plan": plan,
        "config": config,
        "test_accuracy": summary["results"]["test"]["accuracy"],
        "validation_accuracy": summary["results"]["validation"]["accuracy"],
        "train_seconds": summary["train_seconds_this_run"],
        "wall_seconds": json.loads(timing.read_text())["wall_seconds"],
        "input_wait_fraction": summary.get("input_wait_fraction"),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| plan | config | test accuracy | validation accuracy | wall time | input wait |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['plan']} | `{r['config']}` | {r['test_accuracy']:.4f} | "
            f"{r['validation_accuracy']:.4f} | {r['wall_seconds'] / 60:.1f} min | "
            + (
                f"{r['input_wait_fraction']:.2%} |"
                if r.get("input_wait_fraction") is not None
                else "- |"
            )
        )
    return "\n".join(lines)


def main(argv):
    del argv
    workdir = Path(_WORKDIR.value)
    workdir.mkdir(parents=True, exist_ok=True)
    overrides = shlex.split(_OVERRIDES.value)
    rows = [run_plan(_FAMILY.value, p, workdir, overrides) for p in _PLANS.value]
    (workdir / "results.json").write_text(json.dumps(rows, indent=1))
    table = markdown(rows)
    (workdir / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    cli.run(main, program="experiments.compare_plans")
