"""Show what an experiment would train, without training (and without reading any data).

    python -m tlx.inspect --config=configs/mnv2_fmnist_progressive.py [--config.plan.k=3 ...]

Prints the model, its ordered parameter groups (with parameter counts), the plan's stages and the
freeze audit of every stage, as the trainer would print them. Exits with an error, before any
compute, on a plan that freezes or matches nothing or does not fit the run (`build_plan` checks).
Parameters and optimizer state are only traced (`jax.eval_shape`), so even VGG costs no memory.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from tlx import cli, runtime
from tlx.errors import ConfigError, TlxError


def define_flags() -> None:
    """Defined only when run as a program, so that importing this module beside other
    programs (tests do, in one process) claims no flag name."""
    config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
    flags.mark_flags_as_required(["config"])


def describe(experiment) -> str:
    """The groups, stages and per-stage freeze audits of an experiment, as text."""
    import jax

    from tlx.run_start import optimizer_labels
    from tlx.transfer import audit
    from tlx.transfer.groups import assign_groups
    from tlx.transfer.optim import StageOptimizers
    from tlx.tree import flatten

    spec = experiment.spec
    variables = jax.eval_shape(experiment.model.init, jax.random.key(0))
    shapes = flatten(variables["params"])
    model_state = {k: v for k, v in variables.items() if k != "params"}
    group_of = assign_groups(list(shapes), experiment.model.groups)
    plan, labels = optimizer_labels(experiment, group_of, shapes, model_state)
    optimizer_for = StageOptimizers(plan, labels, spec.optim, spec.total_steps)

    from tlx.adaptation.describe import describe_adaptation

    lines = [f"Model: {experiment.model.description}", *describe_adaptation(spec)]
    lines.append("Parameter groups (input -> output):")
    for name, regex in experiment.model.groups:
        count = sum(int(shapes[p].size) for p, g in group_of.items() if g == name)
        lines.append(f"  {name:<16}{count:>12,}  {regex}")
    lines.append(f"Plan {plan.name}: {len(plan.stages)} stage(s)")
    for index, stage in enumerate(plan.stages):
        tx = optimizer_for(index)
        opt_state = jax.eval_shape(tx.init, shapes)
        rows = audit.audit_stage(stage, labels, shapes, opt_state)
        lines.append(audit.format_audit(rows, index, stage.start_step))
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    runtime.configure()
    from tlx.experiment import build_experiment

    try:
        experiment = build_experiment(flags.FLAGS.config, with_data=False)
    except TlxError:
        raise
    except (ValueError, FileNotFoundError) as e:  # a config, checkpoint or data problem
        raise ConfigError(f"this experiment cannot run: {e}") from e
    print(describe(experiment))


if __name__ == "__main__":
    define_flags()
    cli.run(main, program="tlx.inspect")
