"""Epoch time with and without the feature cache, through the real trainer, as a ratio.

    python -m experiments.feature_cache_speed --families=mnv2_fmnist,minilm_rt --epochs=4 \
        --out=runs/feature_cache

For each family's feature-extraction config (configs/<family>_feature_extraction.py): one run with
`feature_cache="off"` and one with `"memory"`, each for `--epochs` epochs of its training set,
logging one train window per epoch. The trainer's examples/s per window (evaluation excluded)
gives the epoch times; epochs after the first are compared (the first holds compilation). The
cache's build time (one inference pass over the training set) is reported separately. Images run
with `data.augment="none"`, which caching requires, in both runs. Writes OUT/feature_cache.{md,json}.
"""

from __future__ import annotations

import importlib
import json
import math
import shutil
import statistics
import time
from pathlib import Path

from absl import flags

from tlx import cli
from tlx.machine import machine


def define_flags() -> None:
    """Defined only when run as a program, so that importing this module beside other
    experiments (tests do, in one process) claims no flag name."""
    flags.DEFINE_list("families", ["mnv2_fmnist", "minilm_rt"], "Config families.")
    flags.DEFINE_integer("epochs", 4, "Epochs per run (the first is not compared).")
    flags.DEFINE_integer("eval_examples", 500, "Examples per evaluation split.")
    flags.DEFINE_integer(
        "train_examples", 0, "Training examples (a fixed subset); 0 keeps each config's own."
    )
    flags.DEFINE_integer("image_size", 0, "Image models' input size; 0 keeps the config's.")
    flags.DEFINE_integer(
        "steps_per_call", None, "config.steps_per_call for both runs (default: the config's)."
    )
    flags.DEFINE_string("out", "runs/feature_cache", "Output folder.")


def run(family: str, mode: str, epochs: int, workdir: Path) -> dict:
    from tlx.experiment import build_experiment
    from tlx.trainer import train

    config = importlib.import_module(f"configs.{family}_feature_extraction").get_config()
    config.feature_cache = mode
    if "augment" in config.data:
        config.data.augment = "none"
    config.data.eval_examples = flags.FLAGS.eval_examples
    if flags.FLAGS.image_size and "image_size" in config.model:
        config.model.image_size = flags.FLAGS.image_size
    if flags.FLAGS.train_examples:
        config.data.train_examples = flags.FLAGS.train_examples
    if flags.FLAGS.steps_per_call:
        config.steps_per_call = flags.FLAGS.steps_per_call
    exp = build_experiment(config)
    steps_per_epoch = math.ceil(exp.cacheable.num_examples / int(config.batch_size))
    config.total_steps = epochs * steps_per_epoch
    config.log_every = steps_per_epoch
    config.eval_every = config.checkpoint_every = config.total_steps
    exp = build_experiment(config)  # plan stages depend on total_steps

    marks = {}

    def log(message: str) -> None:
        if message.startswith("Freeze audit"):
            marks["stage"] = time.perf_counter()
        if message.startswith("feature cache:"):
            marks["cached"] = time.perf_counter()
        print(message)

    shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, not a resume
    started = time.perf_counter()
    summary = train(exp, workdir, log=log)
    wall = time.perf_counter() - started
    windows = [
        json.loads(line)
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "train"
    ]
    epoch_seconds = [
        steps_per_epoch * int(config.batch_size) / w["examples_per_sec"] for w in windows
    ]
    return {
        "family": family,
        "feature_cache": mode,
        "examples": exp.cacheable.num_examples,
        "batch_size": int(config.batch_size),
        "steps_per_epoch": steps_per_epoch,
        "epoch_seconds": epoch_seconds,
        "later_epoch_seconds": statistics.median(epoch_seconds[1:]),
        "cache_build_seconds": marks["cached"] - marks["stage"] if "cached" in marks else 0.0,
        "wall_seconds": wall,
        "validation_accuracy": summary["results"]["validation"]["accuracy"],
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| family | cache | examples | first epoch s | later epoch s (median) | cache build s "
        "| speed-up, later epochs | val acc (first 500) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_family = {}
    for r in rows:
        by_family.setdefault(r["family"], {})[r["feature_cache"]] = r
    for family, modes in by_family.items():
        for mode, r in modes.items():
            speedup = ""
            if mode != "off" and "off" in modes:
                speedup = f"{modes['off']['later_epoch_seconds'] / r['later_epoch_seconds']:.1f}x"
            lines.append(
                f"| {family} | {mode} | {r['examples']} | {r['epoch_seconds'][0]:.2f} | "
                f"{r['later_epoch_seconds']:.3f} | {r['cache_build_seconds']:.1f} | {speedup} | "
                f"{r['validation_accuracy']:.4f} |"
            )
    return "\n".join(lines)


def main(argv):
    del argv
    out = Path(flags.FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for family in flags.FLAGS.families:
        for mode in ("off", "memory"):
            rows.append(run(family, mode, flags.FLAGS.epochs, out / f"{family}_{mode}"))
            report = f"Machine: {machine()}\n\n{table(rows)}\n"
            (out / "feature_cache.md").write_text(report)
            (out / "feature_cache.json").write_text(json.dumps(rows, indent=1))
    print(report)


if __name__ == "__main__":
    define_flags()
    cli.run(main, program="experiments.feature_cache_speed")
