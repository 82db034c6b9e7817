"""`python -m experiments.aggregate`: see experiments.aggregate."""

from absl import flags

import experiments.aggregate as package
from experiments.aggregate import command_line
from tlx import cli

__doc__ = package.__doc__  # absl's --help prints the main module's docstring and key flags

if __name__ == "__main__":
    command_line.define_flags()
    flags.adopt_module_key_flags(command_line)
    cli.run(command_line.main, program="experiments.aggregate")
