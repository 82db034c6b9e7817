"""`python -m experiments.bench`: see experiments.bench."""

from absl import flags

import experiments.bench as package
from experiments.bench import command_line
from tlx import cli

__doc__ = package.__doc__  # absl's --help prints the main module's docstring and key flags

if __name__ == "__main__":
    flags.adopt_module_key_flags(command_line)
    cli.run(command_line.main, program="experiments.bench")
