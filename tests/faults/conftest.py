"""Shared by the fault tests: one small run of the real entry point, trained straight through,
that every faulty run must end identical to."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from tests.test_cli import tiny_overrides

STEPS = 8  # checkpoints every 2 steps; a new plan stage every 2 (4 groups); evaluation at the end


def train_args(tiny_bert_dir, rt_data_dir, workdir, *extra) -> list[str]:
    """The tiny run of tests.test_cli, longer: a new plan stage (of 4 groups) and a checkpoint
    every 2 steps, train metrics at every step, evaluation at the end."""
    flags = tiny_overrides(
        tiny_bert_dir, rt_data_dir, workdir, STEPS, plan__every=2, eval_every=STEPS, log_every=1
    )
    return ["--config=configs/minilm_rt_progressive.py", *flags, *extra]


def launch(args, fault: str | None = None, timeout: int = 600, module="tests.faults.launch"):
    """The training entry point in a subprocess (with a fault injected by tests.faults.launch)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
    env.pop("TLX_FAULT", None)
    if fault:
        env["TLX_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def predict(workdir, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "tlx.predict", f"--workdir={workdir}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def end_state(workdir: Path) -> dict:
    """Everything a finished run leaves that must not depend on faults: every array of the
    last checkpoint (bit for bit) and the final evaluation."""
    from tlx.checkpoint import Checkpoints

    step_dir = Path(workdir) / "checkpoints"
    checkpoints = Checkpoints(step_dir)
    step = checkpoints.latest_step()
    meta = checkpoints.restore_meta(step)
    params = checkpoints.restore_params(step)
    checkpoints.close()
    summary = json.loads((Path(workdir) / "summary.json").read_text())
    return {
        "step": step,
        "checksums": meta["checksums"],  # of params, optimizer state and RNG, as written
        "params": {k: np.asarray(v) for k, v in _flat(params).items()},
        "results": summary["results"],
    }


def assert_same_end_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    assert a["checksums"] == b["checksums"]  # every array of the checkpoint, bit for bit
    assert a["params"].keys() == b["params"].keys()
    for key in a["params"]:
        np.testing.assert_array_equal(a["params"][key], b["params"][key], err_msg=key)
    assert a["results"] == b["results"]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under a folder: to prove that nothing was written."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def short_error(result, most_lines: int = 12) -> str:
    """stderr of a failed command: an exit code of 2, no traceback, a few lines."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) <= most_lines, result.stderr
    return result.stderr


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.fixture(scope="session")
def straight_run(tiny_bert_dir, rt_data_dir, tmp_path_factory) -> Path:
    """The run trained start to end with no fault."""
    workdir = tmp_path_factory.mktemp("straight") / "run"
    result = launch(train_args(tiny_bert_dir, rt_data_dir, workdir))
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.fixture(scope="session")
def straight_end_state(straight_run) -> dict:
    return end_state(straight_run)
