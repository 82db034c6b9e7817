"""Every module of tlx and experiments imports beside every other in one process.

pytest-xdist runs any mix of test files in one worker. A program that defines absl flags at import
time (say --out) breaks every later import of another program with the same flag name, so the
failure depends on which files a worker happened to draw (CI stop 41: experiments.adapt_diagnose
and experiments.speed_vs_torch both defined --out). Programs define their flags in
define_flags(), called under `if __name__ == "__main__"`; this test imports everything at once,
in a fresh interpreter, so that the order cannot hide a clash.
"""

import importlib
import subprocess
import sys
import textwrap

import pytest

IMPORT_ALL = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import experiments, tlx

    names = []
    for package in (tlx, experiments):
        prefix = package.__name__ + "."
        names += [m.name for m in pkgutil.walk_packages(package.__path__, prefix)]
    failures = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # report every module, not only the first
            failures.append(f"{name}: {type(e).__name__}: {e}")
    print(len(names))
    print("\\n".join(failures))
    sys.exit(1 if failures else 0)
    """
)


def test_every_module_imports_beside_every_other():
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert int(result.stdout.split()[0]) > 100  # the walk found the packages, not an empty tree


PROGRAMS = {  # program -> one flag it defines when run (and only then)
    "experiments.adapt_diagnose": "label_map",
    "experiments.yolo_speed": "interleave_rounds",
    "experiments.time_to_accuracy": "epochs",
    "experiments.checkpoint_verify_cost": "repeats",
    "experiments.frcnn_versus_torchvision": "reference_scratch",
    "tlx.predict": "score_threshold",
    "tlx.export": "format",
}


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_a_program_defines_its_flags_when_run_and_not_when_imported(program):
    from absl import flags

    importlib.import_module(program if program != "tlx.export" else "tlx.export.__main__")
    assert PROGRAMS[program] not in flags.FLAGS
    result = subprocess.run(
        [sys.executable, "-m", program, "--helpshort"], capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"--{PROGRAMS[program]}" in result.stdout  # the main module's own flags (absl exits 1)
