"""`python -m experiments.sweep`: see experiments.sweep."""

from absl import flags

import experiments.sweep as package
from experiments.sweep import command_line
from tlx import cli

__doc__ = package.__doc__  # absl's --help prints the main module's docstring and key flags

if __name__ == "__main__":
    command_line.define_flags()
    flags.adopt_module_key_flags(command_line)
    cli.run(command_line.main, program="experiments.sweep")
