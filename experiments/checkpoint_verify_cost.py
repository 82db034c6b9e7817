"""What checking a checkpoint costs, against the restore it protects, on the MiniLM run.

    python -m experiments.checkpoint_verify_cost --out=experiments/results/checkpoint_verify_cost

Builds the default experiment's model (all-MiniLM-L6-v2 + head, --config=minilm_rt_finetune,
every parameter trainable so the optimizer state is full size), saves one checkpoint as the trainer
does, then times, interleaved over --repeats rounds (medians):
  restore   orbax restoring params + optimizer state + RNG, unverified (what resume did before)
  arrays    recomputing the arrays' checksums after the restore: the verification
  files     the file-list check (CRC-32 of the restored items' files), which runs only after a
            failure, to name the damaged files: shown for scale, not part of the cost
and the whole verified `Checkpoints.restore`. The optimizer moments are filled with random values,
as after training (zeros would compress to nothing on disk and make the restore look cheap). The goal (issue #18): verification at most 10% of the
restore time. Writes OUT.json and OUT.md with the machine named.
"""

from __future__ import annotations

import importlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from absl import flags

from tlx import cli


def define_flags() -> None:
    """Defined only when run as a program, so that importing this module beside other
    experiments (tests do, in one process) claims no flag name."""
    flags.DEFINE_string("out", None, "Output prefix: OUT.json and OUT.md.")
    flags.DEFINE_integer("repeats", 7, "Timed rounds (each times every part once).")
    flags.DEFINE_string("config", "minilm_rt_finetune", "Config module under configs/.")
    flags.mark_flags_as_required(["out"])


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure(config_path: str, repeats: int) -> dict:
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    from tlx.checkpoint import Checkpoints, _abstract, array_checksums, damaged_files
    from tlx.experiment import build_experiment
    from tlx.trainer import initial_params, train_state_of
    from tlx.transfer.groups import assign_groups
    from tlx.transfer.optim import StageOptimizers
    from tlx.tree import flatten

    config = importlib.import_module(f"configs.{config_path}").get_config()
    exp = build_experiment(config, with_data=False)
    params, model_state = initial_params(exp, jax.random.key(0), log=lambda *_: None)
    flat = flatten(params)
    group_of = assign_groups(list(flat), exp.model.groups)
    tx = StageOptimizers(exp.plan, group_of, config.optim, int(config.total_steps))(0)
    rng = np.random.default_rng(0)
    moments = lambda x: (
        rng.standard_normal(x.shape).astype(x.dtype) if np.issubdtype(x.dtype, np.floating) else x
    )
    opt_state = jax.tree_util.tree_map(moments, jax.jit(tx.init)(flat))
    train_state = train_state_of(opt_state, jax.random.key(1))
    folder = Path(tempfile.mkdtemp(prefix="tlx_verify_cost_"))
    try:
        checkpoints = Checkpoints(folder / "checkpoints", writer=True)
        checkpoints.save(1, params, train_state, {"step": 1, "stage": 0}, model_state)
        likes = {"params": params, "train_state": train_state}
        step_dir = folder / "checkpoints" / "1"
        stored = sum(p.stat().st_size for p in step_dir.rglob("*") if p.is_file())
        args = lambda: ocp.args.Composite(
            **{k: ocp.args.StandardRestore(_abstract(v)) for k, v in likes.items()},
            meta=ocp.args.JsonRestore(),
        )
        times = {"restore": [], "files": [], "arrays": [], "verified_restore": []}
        checkpoints.manager.restore(1, args=args())  # warm the page cache and orbax
        items = ("params", "train_state", "meta")
        for _ in range(repeats):
            seconds, restored = _timed(lambda: checkpoints.manager.restore(1, args=args()))
            times["restore"].append(seconds)
            times["arrays"].append(
                _timed(lambda: [array_checksums(restored[k]) for k in likes])[0]  # noqa: B023
            )
            times["files"].append(_timed(lambda: damaged_files(step_dir, items))[0])
            times["verified_restore"].append(
                _timed(lambda: checkpoints.restore(1, params, train_state))[0]
            )
        checkpoints.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    median = {k: statistics.median(v) for k, v in times.items()}
    verify = median["arrays"]
    return {
        "config": config_path,
        "model": exp.model.description,
        "parameters": sum(v.size for v in flat.values()),
        "checkpoint_bytes": stored,
        "repeats": repeats,
        "median_seconds": median,
        "verification_fraction_of_restore": verify / median["restore"],
        "all_seconds": times,
    }


def report(result: dict, machine: str) -> str:
    m = result["median_seconds"]
    return "\n".join(
        [
            f"# Checkpoint verification cost ({result['model']})",
            "",
            f"Machine: {machine}",
            "",
            f"Checkpoint: {result['parameters']:,} parameters + Adam state, "
            f"{result['checkpoint_bytes'] / 1e6:.0f} MB on disk; medians of {result['repeats']}.",
            "",
            "| part | seconds |",
            "|---|---|",
            f"| orbax restore, unverified | {m['restore']:.3f} |",
            f"| array checksums of what was restored (the verification) | {m['arrays']:.3f} |",
            f"| Checkpoints.restore, verified (all of it) | {m['verified_restore']:.3f} |",
            f"| file-list check, only after a failure (to name files) | {m['files']:.3f} |",
            "",
            f"Verification = {100 * result['verification_fraction_of_restore']:.1f}% of the "
            "restore time (goal: at most 10%). End to end, the verified restore took "
            f"{100 * (m['verified_restore'] / m['restore'] - 1):.1f}% longer than the unverified "
            "one (the difference beyond the checksums is timing noise between the two calls).",
        ]
    )


def main(argv):
    del argv
    from tlx import runtime
    from tlx.machine import machine

    runtime.configure()
    result = measure(flags.FLAGS.config, flags.FLAGS.repeats)
    result["machine"] = machine()
    out = Path(flags.FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    text = report(result, result["machine"])
    out.with_suffix(".md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    define_flags()
    cli.run(main, program="experiments.checkpoint_verify_cost")
