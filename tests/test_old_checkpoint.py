"""A run folder written by tlx at commit 93fc327 (before issue 19's restructuring) resumes under
the current code to the same end as the old code's own unbroken run.

The fixture (tests/data/old_run_93fc327, see its README.md) holds a tiny BERT, the folder of a run
that was stopped after its step-4 checkpoint, and the metrics and final parameters of the same run
trained straight to step 10 by the old code. Its checkpoints predate tlx's per-array checksums.
"""

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from configs import minilm_rt_progressive
from tests.models.equivalence import assert_close
from tlx import run_folder
from tlx.checkpoint import CHECKSUMS, Checkpoints
from tlx.experiment import build_experiment
from tlx.trainer import train
from tlx.tree import flatten

FIXTURE = Path(__file__).parent / "data" / "old_run_93fc327"
# The command line of the fixture's run (make_fixture.py's overrides of the same config file).
# Paths are relative: model.checkpoint resolves against the working directory, and the data
# folder comes from $TLX_DATA_DIR (data.data_dir is "").
OVERRIDES = {
    "model.checkpoint": "tiny_bert",
    "data.train_examples": 96,
    "data.eval_batch_size": 256,
    "data.buckets": (64,),
    "batch_size": 8,
    "total_steps": 10,
    "plan.every": 3,
    "eval_every": 4,
    "checkpoint_every": 2,
    "log_every": 1,
    "optim.warmup_steps": 2,
    "optim.learning_rate": 1e-3,
}
TIMING = {"examples_per_sec", "input_wait_fraction", "elapsed_seconds"}
# How close the resumed run must come to the old unbroken one. Bit for bit on the CPU that made
# the fixture (the test was first written with equality there); another CPU's float32 kernels
# round differently (AVX2 against AVX-512 GEMM blocking), so the same six steps end a few ulps
# apart. On a 2-core AMD EPYC Zen 3 (AVX2 only) the metrics differed by at most 2e-7 relative and
# every parameter array by at most 22 float32 ulps of its largest magnitude (LayerNorm biases; the
# key bias below aside). A wrong resume moves far more: lost Adam moments make the next update a
# full learning rate (1e-3) on every trained parameter, ~1e-2 of these weights' scale; a wrong
# step, stage or data position changes which parameters train or on what. Bit-exact resume
# within one machine is tests/faults' (killed runs end bit-identical).
RTOL = 1e-5  # metrics: ~84 float32 ulps
PARAMS_RTOL = 3e-5  # each array: max |got - want| <= PARAMS_RTOL * max |want|, ~250 ulps
# BERT's key bias adds q . b_k to all of a query's key scores alike, which the softmax cancels:
# its true gradient is 0, and Adam (which divides by the gradient's own size) turns the rounding
# noise in it into steps of up to the learning rate. Its values (~3e-7 here) are noise on any
# CPU, so they are held to Adam's bound instead: at most one learning rate per step.
NO_GRADIENT = re.compile(r"attention/self/key/bias$")


def config():
    config = minilm_rt_progressive.get_config()
    for key, value in OVERRIDES.items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


@pytest.fixture
def old_run(tmp_path, rt_data_dir, monkeypatch) -> Path:
    """A copy of the fixture as the working directory, the data folder in $TLX_DATA_DIR."""
    shutil.copytree(FIXTURE / "run", tmp_path / "run")
    shutil.copytree(FIXTURE / "tiny_bert", tmp_path / "tiny_bert")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TLX_DATA_DIR", rt_data_dir)
    return tmp_path / "run"


def _close(a, b) -> bool:
    return bool(np.isclose(a, b, rtol=RTOL, atol=0))


def test_old_config_is_the_same_experiment():
    """The config.json 93fc327 wrote equals the config the same command builds now: nothing
    was added, renamed or removed, so check_resume has nothing to refuse."""
    old = json.loads((FIXTURE / "run" / run_folder.CONFIG).read_text())
    assert run_folder.config_changes(old, config()) == {}


def test_old_checkpoint_restores_without_checksums(caplog):
    """93fc327 wrote no checksums: every restore reads such a checkpoint unverified, with a
    warning, rather than refusing it."""
    checkpoints = Checkpoints(FIXTURE / "run" / run_folder.CHECKPOINTS)  # a reader: writes nothing
    assert checkpoints.all_steps() == [2, 4]
    with caplog.at_level(logging.WARNING):
        meta = checkpoints.restore_meta(4)
        params = flatten(checkpoints.restore_params(4))
    checkpoints.close()
    assert meta == {"step": 4, "stage": 1} and CHECKSUMS not in meta
    assert "has no checksums" in caplog.text
    assert len(params) == 39 and params["classifier/kernel"].shape == (32, 2)


def test_old_run_resumes_to_the_old_codes_unbroken_end(old_run):
    expected = json.loads((FIXTURE / "expected.json").read_text())
    logs = []
    summary = train(build_experiment(config()), old_run, log=logs.append, progress=False)

    assert summary["resumed_from_step"] == expected["resumed_from_step"] == 4
    assert any("Resumed" in line and "step 4" in line for line in logs), logs
    assert summary["steps"] == expected["steps"] == 10
    # the resume is recorded next to the old config.json, which is left as it was
    history = run_folder.read_history(old_run)
    assert [(e["event"], e["from_step"], e["changed"]) for e in history] == [("resume", 4, {})]
    assert (old_run / run_folder.CONFIG).read_bytes() == (
        FIXTURE / "run" / run_folder.CONFIG
    ).read_bytes()
    assert run_folder.is_finished(old_run)

    # metrics of steps 5-10: every value but timings, as the old code's unbroken run logged them
    got = [r for r in run_folder.read_metrics(old_run) if r["step"] > 4]
    want = expected["metrics_after_resume"]
    assert [(r["step"], r["split"]) for r in got] == [(r["step"], r["split"]) for r in want]
    mismatches = []
    for g, w in zip(got, want, strict=True):
        keys = (g.keys() | w.keys()) - TIMING
        assert g.keys() - TIMING == w.keys() - TIMING, (g["step"], g["split"], keys)
        for key in sorted(keys - {"step", "split"}):
            if not _close(g[key], w[key]):
                mismatches.append((g["step"], g["split"], key, w[key], g[key]))
    assert not mismatches, mismatches
    assert summary["results"].keys() == expected["results"].keys()
    for split, values in expected["results"].items():
        for key, value in values.items():
            assert _close(summary["results"][split][key], value), (split, key)

    # final parameters: the old unbroken run's, array by array
    want_params = np.load(FIXTURE / "expected_params.npz")
    checkpoints = Checkpoints(old_run / run_folder.CHECKPOINTS)
    assert checkpoints.latest_step() == 10
    assert CHECKSUMS in checkpoints.restore_meta(10)  # what the current code writes is checksummed
    got_params = flatten(checkpoints.restore_params(10))
    checkpoints.close()
    assert sorted(got_params) == sorted(want_params.files)
    for key in want_params.files:  # relative to the array's scale: see equivalence.py on why
        if NO_GRADIENT.search(key):
            bound = OVERRIDES["total_steps"] * OVERRIDES["optim.learning_rate"]
            assert np.max(np.abs(got_params[key])) <= bound, key
        else:
            assert_close(got_params[key], want_params[key], rtol=PARAMS_RTOL, err_msg=key)
