"""`python -m tlx.export --workdir=RUN --format=hf --out=DIR [--step=N]` (see tlx.export)."""

from absl import flags

from tlx import cli
from tlx.export import FORMATS, export_run


def define_flags() -> None:
    """Defined only when run as a program, so that importing this module beside other
    programs (tests do, in one process) claims no flag name."""
    flags.DEFINE_string("workdir", None, "The run to export (what tlx.train wrote).")
    flags.DEFINE_string("format", None, f"One of {sorted(FORMATS)}.")
    flags.DEFINE_string("out", None, "The folder to write.")
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the selected one).")
    flags.mark_flags_as_required(["workdir", "format", "out"])


def main(argv):
    del argv
    for path in export_run(
        flags.FLAGS.workdir, flags.FLAGS.format, flags.FLAGS.out, flags.FLAGS.step
    ):
        print(f"wrote {path}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, program="tlx.export")
