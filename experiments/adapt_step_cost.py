"""What an adaptation step costs against a plain fine-tuning step of the same model (issue 22's
goal: at most 1.3x), on the real configs and data, in one process.

    python -m experiments.adapt_step_cost --out=experiments/results/adaptation_step_cost

Each row is the trainer's own compiled step (experiments.speed_vs_torch.tlx_stage: tlx.
stage_program for the `finetune` stage, Adam, buffers donated) fed the run's real batches
(build_experiment's train_batches: the mixed source + target batches for pseudo_label, coral and
dann), timed as the median of --steps steps after --warmup untimed ones, every step synchronised.
Two plain rows per model: the source batch alone (what a source-only run pays a step) and a
batch as large as every input the adaptation step runs through the network (source + target,
and pseudo-labels' second view), so that the method's own overhead (the second loss, the
gradient reversal and domain classifier, the padding of text parts to one length) is the
ratio to the second. Models: the small CNN on Fashion-MNIST -> Fashion-MNIST-C
(configs/adapt_fmnist_c.py: 64 source + 128 target images a step) and all-MiniLM-L6-v2 on Rotten
Tomatoes -> airline tweets (configs/adapt_rt_airline.py: 32 + 32 texts). Writes OUT.md and
OUT.json; run it alone on the machine.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from absl import app, flags

from experiments import speed_vs_torch as svt  # noqa: F401  (defines --steps, --warmup, --out)
from tlx.machine import git_commit, machine

FLAGS = flags.FLAGS


# --steps, --warmup and --out are experiments.speed_vs_torch's flags (it times the steps); their
# defaults here are set in main().
def define_flags() -> None:
    """Defined only when run as a program, so that importing this module beside other
    experiments (tests do, in one process) claims no flag name."""
    flags.DEFINE_list("pairs", ["small_cnn", "minilm"], "small_cnn, minilm.")


STEPS, WARMUP, OUT = 30, 5, "runs/adapt_step_cost"


# Per pair: the adaptation config, its target, and the endpoint CORAL and DANN align.
PAIRS = {
    "small_cnn": ("configs.adapt_fmnist_c", "fashion_mnist_c/gaussian_noise/5", "dense_relu"),
    "minilm": ("configs.adapt_rt_airline", "airline_tweets", "pooled"),
}


def row_config(pair: str, method: str, batch: int | None = None):
    """The pair's adaptation config for `method` ("": an ordinary fine-tuning run), 300
    fine-tuning steps, not started from a source run (the weights do not change the cost)."""
    import importlib

    module, target, endpoint = PAIRS[pair]
    config = importlib.import_module(module).get_config()
    config.init_from = ""
    config.adapt.method = method
    config.adapt.target = target
    config.adapt.endpoint = endpoint if method in ("coral", "dann") else ""
    config.total_steps = 300
    config.plan.name = "finetune"
    if batch:
        config.batch_size = batch
    return config


def rows_for(model: str) -> list[tuple[str, object]]:
    def make(method, batch=None):
        return row_config(model, method, batch)

    base = make("")
    source, target = base.batch_size, base.adapt.target_batch_size
    # plain: an ordinary fine-tuning run (no adaptation) at three batch sizes
    return [
        (f"plain, {source} source", make("")),
        (f"plain, {source + target} source", make("", source + target)),
        (f"plain, {source + 2 * target} source", make("", source + 2 * target)),
        (f"pseudo_label, {source} + 2x{target}", make("pseudo_label")),
        (f"coral, {source} + {target}", make("coral")),
        (f"dann, {source} + {target}", make("dann")),
    ]


def inputs_per_step(batch: dict) -> int:
    """Examples the step runs through the network: every part of a mixed batch."""
    from tlx.adaptation.mixed import PARTS

    names = [pattern.format(key) for key in ("image", "input_ids") for _, pattern in PARTS]
    return sum(len(batch[name]) for name in names if name in batch)


def time_row(config, steps: int, warmup: int) -> dict:
    import jax

    from tlx.experiment import build_experiment

    exp = build_experiment(config)
    program, carry, mode = svt.tlx_stage(
        exp.model, "finetune", train_batches=exp.train_batches, task=exp.task
    )
    rng, times = jax.random.key(1), []
    for step in range(warmup + steps):
        batch = mode.put_batch(exp.train_batches[step])
        start = time.perf_counter()
        out = program.step(*carry, batch, rng, step)
        jax.block_until_ready(out)
        carry = svt.next_carry(carry, out)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    images = inputs_per_step(exp.train_batches[0])
    return {"step_s": median, "inputs": images, "per_input_ms": 1e3 * median / images}


def markdown(results: dict) -> str:
    lines = [
        "# Adaptation step cost against plain fine-tuning steps",
        "",
        f"Machine: {results['machine']}; commit {results['commit']}. Median of "
        f"{results['steps']} steps after {results['warmup']} untimed. Command: "
        "`python -m experiments.adapt_step_cost`.",
        "",
    ]
    for model, rows in results["models"].items():
        plain_small = rows[0]["step_s"]
        lines += [
            f"## {model}",
            "",
            "| step | inputs | step ms | ms per input | x plain step (source batch) | "
            "x plain step (same inputs) |",
            "|---|---|---|---|---|---|",
        ]
        plain_by_inputs = {r["inputs"]: r["step_s"] for r in rows if r["name"].startswith("plain")}
        for r in rows:
            same = plain_by_inputs.get(r["inputs"])
            lines.append(
                f"| {r['name']} | {r['inputs']} | {1e3 * r['step_s']:.1f} | "
                f"{r['per_input_ms']:.3f} | {r['step_s'] / plain_small:.2f} | "
                f"{r['step_s'] / same:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv):
    del argv
    given = {name: FLAGS[name].present for name in ("steps", "warmup", "out")}
    steps = FLAGS.steps if given["steps"] else STEPS
    warmup = FLAGS.warmup if given["warmup"] else WARMUP
    out = Path(FLAGS.out if given["out"] else OUT)
    results = {
        "machine": machine(),
        "commit": git_commit(),
        "steps": steps,
        "warmup": warmup,
        "models": {},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    for model in flags.FLAGS.pairs:
        rows = []
        for name, config in rows_for(model):
            row = {"name": name, **time_row(config, steps, warmup)}
            print(f"{model} {name}: {1e3 * row['step_s']:.1f} ms ({row['inputs']} inputs)")
            rows.append(row)
            results["models"][model] = rows
            out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    define_flags()
    app.run(main)
