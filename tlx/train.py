"""Train an experiment.

    python -m tlx.train --config=configs/minilm_rt_progressive.py --workdir=runs/rt \
        [--config.total_steps=300 --config.plan.every=50 ...]

Rerunning with the same --workdir resumes from its latest checkpoint. Unknown or mistyped
``--config.*`` overrides are rejected before anything is built.

Several processes (hosts) train one run when each is started with the same
``--coordinator_address=HOST:PORT`` (process 0's) and ``--num_processes=N``, its own
``--process_id`` in [0, N), and the same --config and --workdir (a folder all of them can reach):
see README "Multi-host". Unset, these flags fall back to TLX_COORDINATOR_ADDRESS /
TLX_NUM_PROCESSES / TLX_PROCESS_ID (or JAX_*); none set is a one-process run.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from tlx import cli, distributed, run_lock, runtime
from tlx.baselines import is_baseline, run_baseline
from tlx.errors import ConfigError, TlxError
from tlx.spec import read_spec


def define_flags() -> None:
    """Defined only when run as a program, so that importing this module beside other
    programs (tests do, in one process) claims no flag name."""
    config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Run folder: checkpoints, metrics, summary.")
    flags.DEFINE_integer(
        "cpu_devices",
        0,
        "Split the host CPU into this many JAX devices (testing data parallelism).",
    )
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "Multi-process runs: host:port of process 0, the same on every process "
        "(default: $TLX_COORDINATOR_ADDRESS, then $JAX_COORDINATOR_ADDRESS).",
    )
    flags.DEFINE_integer(
        "num_processes",
        None,
        "Multi-process runs: how many processes train together "
        "(default: $TLX_NUM_PROCESSES, then $JAX_NUM_PROCESSES; unset: one process).",
    )
    flags.DEFINE_integer(
        "process_id",
        None,
        "Multi-process runs: this process's id in [0, num_processes) "
        "(default: $TLX_PROCESS_ID, then $JAX_PROCESS_ID).",
    )
    flags.DEFINE_integer(
        "distributed_timeout_s",
        300,
        "Multi-process runs: give up when the other processes have not connected after this long.",
    )
    flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # tfds and orbax log every step at INFO
        logging.set_verbosity(logging.WARNING)
    spec = read_spec(flags.FLAGS.config)  # every config problem, before JAX starts
    if is_baseline(spec):  # scikit-learn on the host: no network, JAX or experiment to build
        from tlx.report import print_result_table

        with run_lock.hold(flags.FLAGS.workdir):
            print_result_table(run_baseline(spec, flags.FLAGS.workdir))
        return
    runtime.configure(flags.FLAGS.cpu_devices or None, spec.xla_flags)
    try:  # before anything touches a device: JAX's backend then spans every process
        settings = distributed.initialize(
            flags.FLAGS.coordinator_address,
            flags.FLAGS.num_processes,
            flags.FLAGS.process_id,
            timeout_s=flags.FLAGS.distributed_timeout_s,
        )
    except ValueError as e:
        raise SystemExit(f"tlx.train: cannot join the multi-process run.\n{e}") from e
    except RuntimeError as e:  # JAX's own: e.g. DEADLINE_EXCEEDED, the others never connected
        raise SystemExit(
            f"tlx.train: the multi-process run did not assemble within "
            f"{flags.FLAGS.distributed_timeout_s} s: start every process with the same --coordinator_address and --num_processes, and check that process 0's "
            f"host and port are reachable.\n{type(e).__name__}: {e}"
        ) from e
    if settings.process_id == 0:  # one holder per run: every process shares the workdir
        with run_lock.hold(flags.FLAGS.workdir):
            _train(spec)
    else:
        _train(spec)


def _train(spec) -> None:
    # Imported after configure(): XLA reads its flags once, when JAX initialises.
    from tlx.experiment import build_experiment
    from tlx.report import print_result_table
    from tlx.trainer import train

    try:
        experiment = build_experiment(spec)
    except TlxError:
        raise
    except (ValueError, FileNotFoundError) as e:  # a config, checkpoint or data problem
        raise ConfigError(f"cannot start this experiment: {e}") from e
    summary = train(experiment, flags.FLAGS.workdir)
    import jax

    if jax.process_index() == 0:  # one table per run, not one per process
        print_result_table(summary)


if __name__ == "__main__":
    define_flags()
    cli.run(main, program="tlx.train")
