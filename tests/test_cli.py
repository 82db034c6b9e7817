"""The command-line entry points, run as a user runs them (subprocesses)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO
from tlx.checkpoint import Checkpoints
from tlx.tree import flatten

CONFIG = "configs/minilm_rt_progressive.py"


def run(*args, env=None, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def tiny_overrides(tiny_bert_dir, rt_data_dir, workdir, steps=4, **settings) -> list[str]:
    """tlx.train flags for a tiny run: the 2-layer BERT on 64 real Rotten Tomatoes snippets, 8 a
    step. `settings` replace or add config values; a dotted key is spelt with '__'
    (``plan__every=2`` is ``--config.plan.every=2``)."""
    values = {
        "model.checkpoint": tiny_bert_dir,
        "data.data_dir": rt_data_dir,
        "data.train_examples": 64,
        "data.eval_batch_size": 256,
        "batch_size": 8,
        "total_steps": steps,
        "plan.every": 1,
        "eval_every": 4,
        "checkpoint_every": 2,
        "optim.warmup_steps": 1,
        **{key.replace("__", "."): value for key, value in settings.items()},
    }
    return [f"--workdir={workdir}", *(f"--config.{k}={v}" for k, v in values.items())]


def test_train_then_predict(tiny_bert_dir, rt_data_dir, tmp_path):
    workdir = tmp_path / "run"
    result = run(
        "-m",
        "tlx.train",
        f"--config={CONFIG}",
        *tiny_overrides(tiny_bert_dir, rt_data_dir, workdir),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test" in result.stdout and "accuracy" in result.stdout  # the result table
    assert "Freeze audit, stage 0" in result.stdout + result.stderr
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["steps"] == 4
    predicted = run(
        "-m", "tlx.predict", f"--workdir={workdir}", "--top_k=2", "I love this product!"
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    line = predicted.stdout.strip().splitlines()[-1]
    labels, text = line.split("\t")
    assert text == "I love this product!"
    names = [part.split()[0] for part in labels.split(", ")]
    probs = [float(part.split()[1]) for part in labels.split(", ")]
    assert sorted(names) == ["fresh", "rotten"] and abs(sum(probs) - 1) < 2e-3


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.batch_sise=8", "batch_sise"),
        ("--config.batch_size=eight", "batch_size"),
        ("--config.plan.nmae=x", "nmae"),
    ],
)
def test_bad_override_fails_before_compute(override, message, tmp_path):
    result = run("-m", "tlx.train", f"--config={CONFIG}", f"--workdir={tmp_path}", override)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "config.json").exists()  # nothing was started


def test_bad_plan_fails_before_compute(tmp_path):
    result = run(
        "-m",
        "tlx.train",
        f"--config={CONFIG}",
        f"--workdir={tmp_path}",
        "--config.plan.name=freeze_to",
        "--config.plan.k=99",
    )
    assert result.returncode != 0
    assert "freeze_to: k=99 must be between 1 and" in result.stderr
    assert not (tmp_path / "config.json").exists()


def test_eight_cpu_devices_match_one(tiny_bert_dir, rt_data_dir, tmp_path):
    finals = {}
    for devices in (1, 8):
        workdir = tmp_path / f"d{devices}"
        args = tiny_overrides(tiny_bert_dir, rt_data_dir, workdir, steps=4)
        result = run("-m", "tlx.train", f"--config={CONFIG}", f"--cpu_devices={devices}", *args)
        assert result.returncode == 0, result.stderr[-3000:]
        finals[devices] = flatten(Checkpoints(workdir / "checkpoints").restore_params())
        losses = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
        finals[f"loss{devices}"] = [r["loss"] for r in losses if r["split"] == "train"]
    np.testing.assert_allclose(finals["loss1"], finals["loss8"], rtol=1e-5)
    for k in finals[1]:
        np.testing.assert_allclose(finals[1][k], finals[8][k], rtol=1e-4, atol=1e-6, err_msg=k)
