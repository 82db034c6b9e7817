"""`python -m tlx.export --workdir=RUN --format=hf --out=DIR [--step=N]` (see tlx.export)."""

from absl import flags

from tlx import cli
from tlx.export import FORMATS, export_run

_WORKDIR = flags.DEFINE_string("workdir", None, "The run to export (what tlx.train wrote).")
_FORMAT = flags.DEFINE_string("format", None, f"One of {sorted(FORMATS)}.")
_OUT = flags.DEFINE_string("out", None, "The folder to write.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the selected one).")
flags.mark_flags_as_required(["workdir", "format", "out"])


def main(argv):
    del argv
    for path in export_run(_WORKDIR.value, _FORMAT.value, _OUT.value, _STEP.value):
        print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main, program="tlx.export")
