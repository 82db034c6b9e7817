"""Train an experiment.

    python -m tlx.train --config=configs/minilm_rt_progressive.py --workdir=runs/rt \
        [--config.total_steps=300 --config.plan.every=50 ...]

Rerunning with the same --workdir resumes from its latest checkpoint. Unknown or mistyped
``--config.*`` overrides are rejected before anything is built.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from tlx import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder: checkpoints, metrics, summary.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "Split the host CPU into this many JAX devices (testing data parallelism)."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # tfds and orbax log every step at INFO
        logging.set_verbosity(logging.WARNING)
    runtime.configure(_CPU_DEVICES.value or None, _CONFIG.value.get("xla_flags", ""))
    # Imported after configure(): XLA reads its flags once, when JAX initialises.
    from tlx.experiment import build_experiment
    from tlx.report import print_result_table
    from tlx.trainer import train

    try:
        experiment = build_experiment(_CONFIG.value)
    except (ValueError, FileNotFoundError) as e:  # a config, checkpoint or data problem
        raise SystemExit(
            f"tlx.train: cannot start this experiment.\n{type(e).__name__}: {e}"
        ) from e
    summary = train(experiment, _WORKDIR.value)
    print_result_table(summary)


if __name__ == "__main__":
    app.run(main)
