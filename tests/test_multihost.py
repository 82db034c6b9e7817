"""Multi-process training: per-process data shards, jax.distributed start-up, and real runs of two
processes on 127.0.0.1 (CPU collectives over gloo) against one process with the same global batch.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import minilm_rt_progressive
from tests.conftest import REPO
from tests.data.test_images import IDENTITY
from tests.data.test_images import numbered_source as numbered_images
from tests.data.test_text import numbered_source as numbered_texts
from tests.data.test_text import tokenizer  # noqa: F401 (a fixture)
from tlx import distributed
from tlx.checkpoint import Checkpoints
from tlx.data import images, text
from tlx.data.sampling import Shard
from tlx.experiment import process_shard
from tlx.tree import flatten

CONFIG = "configs/minilm_rt_progressive.py"
TIMEOUT = 240  # seconds for any one process; a run that hangs fails instead


# ---------------------------------------------------------------------------------------------
# Shards: the processes' rows put together are the one-process batch.


def joined(parts: list[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def assert_batches_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_text_shards_make_the_global_batch_padded_alike(tokenizer):  # noqa: F811
    source = numbered_texts(37, words=lambda i: 12 if i % 9 == 0 else 1 + i % 3)  # 2 buckets
    common = dict(max_length=24, buckets=(6, 12))
    whole = text.make_train_batches(source, tokenizer, batch_size=8, seed=3, **common)
    parts = [
        text.make_train_batches(
            source, tokenizer, batch_size=8, seed=3, shard=Shard(i, 2), **common
        )
        for i in range(2)
    ]
    lengths = set()
    for step in range(12):
        halves = [p[step] for p in parts]
        assert [len(h["label"]) for h in halves] == [4, 4]
        assert_batches_equal(joined(halves), whole[step])  # same rows, padded to the same length
        lengths.add(whole[step]["input_ids"].shape[1])
    assert len(lengths) > 1  # the batches really differ in padded length

    # Evaluation: dummy rows fill the last batch; 33 = 4 x 8 + 1, so process 1's rows of the last
    # batch are all dummies (weight 0), and still padded like process 0's.
    source = numbered_texts(33, words=lambda i: 1 + (i * 5) % 19)
    whole = text.make_eval_batches(source, tokenizer, batch_size=8, **common)
    parts = [
        text.make_eval_batches(source, tokenizer, batch_size=8, shard=Shard(i, 2), **common)
        for i in range(2)
    ]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 5
    for b in range(5):
        assert_batches_equal(joined([parts[0][b], parts[1][b]]), whole[b])
    assert parts[1][4]["weight"].sum() == 0


def test_image_shards_make_the_global_batch_with_the_same_augmentation():
    source = numbered_images(23, size=12)
    p = IDENTITY
    whole = images.make_image_train_batches(source, p, batch_size=6, seed=1)
    parts = [
        images.make_image_train_batches(source, p, batch_size=6, seed=1, shard=Shard(i, 3))
        for i in range(3)
    ]
    for step in (0, 3, 7):  # random crops and flips drawn by each row's global position
        assert_batches_equal(joined([q[step] for q in parts]), whole[step])
    whole = images.make_image_eval_batches(source, p, batch_size=6)
    parts = [
        images.make_image_eval_batches(source, p, batch_size=6, shard=Shard(i, 3))
        for i in (0, 1, 2)
    ]
    for b in range(len(whole)):
        assert_batches_equal(joined([q[b] for q in parts]), whole[b])


def test_batches_that_do_not_split_evenly_are_rejected(tokenizer):  # noqa: F811
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        Shard(0, 3).rows(8)
    with pytest.raises(ValueError, match="eval batch size=8 must be divisible"):
        images.make_image_eval_batches(
            numbered_images(5), IDENTITY, batch_size=8, shard=Shard(1, 3)
        )
    with pytest.raises(ValueError, match="0 <= index < count"):
        Shard(2, 2)


# ---------------------------------------------------------------------------------------------
# jax.distributed settings: from flags, else the environment, checked before anything starts.


def test_settings_come_from_arguments_then_the_environment():
    assert not distributed.resolve(environ={}).multi_process  # nothing set: one process
    env = {
        "TLX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
        "TLX_NUM_PROCESSES": "4",
        "TLX_PROCESS_ID": "3",
    }
    assert distributed.resolve(environ=env) == distributed.Settings("10.0.0.1:1234", 4, 3)
    assert distributed.resolve(process_id=0, environ=env).process_id == 0  # the flag wins
    jax_env = {
        "JAX_COORDINATOR_ADDRESS": "[::1]:99",
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "1",
    }
    assert distributed.resolve(environ=jax_env) == distributed.Settings("[::1]:99", 2, 1)
    assert not distributed.resolve(num_processes=1, environ={}).multi_process
    # one process: initialize is a no-op (no coordinator is contacted)
    assert distributed.initialize(environ={}) == distributed.Settings()


@pytest.mark.parametrize(
    "kwargs, env, message",
    [
        (
            dict(num_processes=2, process_id=2, coordinator_address="127.0.0.1:1"),
            {},
            "outside [0, 2)",
        ),
        (dict(num_processes=2, process_id=-1, coordinator_address="127.0.0.1:1"), {}, "outside"),
        (dict(num_processes=2, process_id=0), {}, "no coordinator address"),
        (dict(num_processes=2, process_id=0, coordinator_address="localhost"), {}, "not host:port"),
        (dict(num_processes=2, process_id=0, coordinator_address="h:70000"), {}, "not host:port"),
        (dict(num_processes=2), {}, "no process id"),
        (dict(coordinator_address="127.0.0.1:1"), {}, "not the number of processes"),
        (dict(num_processes=0), {}, ">= 1"),
        ({}, {"TLX_NUM_PROCESSES": "two"}, "TLX_NUM_PROCESSES='two' is not an integer"),
        ({}, {"TLX_NUM_PROCESSES": "2", "TLX_PROCESS_ID": "5"}, "TLX_PROCESS_ID=5 is outside"),
        (dict(num_processes=1, process_id=1), {}, "only process id is 0"),
    ],
)
def test_bad_settings_say_what_was_expected(kwargs, env, message):
    with pytest.raises(ValueError) as error:
        distributed.resolve(**kwargs, environ=env)
    assert message in str(error.value)


# ---------------------------------------------------------------------------------------------
# Real runs: python -m tlx.train in one and in two processes.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_args(tiny_bert_dir, rt_data_dir, workdir, steps: int) -> list[str]:
    return [
        "-m",
        "tlx.train",
        f"--config={CONFIG}",
        f"--workdir={workdir}",
        f"--config.model.checkpoint={tiny_bert_dir}",
        f"--config.data.data_dir={rt_data_dir}",
        "--config.data.train_examples=64",
        "--config.data.buckets=(64,)",  # one shape: one compilation a stage
        "--config.data.eval_batch_size=256",
        "--config.data.eval_splits=('validation',)",
        "--config.batch_size=8",
        f"--config.total_steps={steps}",
        "--config.plan.start=3",  # stages at steps 0 (3 of the 4 groups train) and 1 (all)
        "--config.plan.every=1",
        "--config.eval_every=4",
        "--config.checkpoint_every=2",
        "--config.log_every=1",
        "--config.optim.warmup_steps=1",
        "--config.optim.decay=constant",  # the same rates whether a run is 2 or 4 steps long
    ]


def launch(args: list[str], num_processes: int = 1, env=None) -> list[subprocess.CompletedProcess]:
    """Start the processes of one run, wait for all of them (killing all past TIMEOUT)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu", **(env or {})}
    extra = [[]]
    if num_processes > 1:
        address = f"127.0.0.1:{free_port()}"
        extra = [
            [
                f"--coordinator_address={address}",
                f"--num_processes={num_processes}",
                f"--process_id={i}",
                "--distributed_timeout_s=60",
            ]
            for i in range(num_processes)
        ]
    procs = [
        subprocess.Popen(
            [sys.executable, *args, *more],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for more in extra
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def assert_ok(results):
    for i, r in enumerate(results):
        assert r.returncode == 0, f"process {i}:\n{r.stderr[-3000:]}"


def final_params(workdir) -> dict:
    return flatten(Checkpoints(workdir / "checkpoints").restore_params())


def train_losses(workdir) -> list[float]:
    records = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "train"]


def assert_same_run(a, b):
    np.testing.assert_allclose(train_losses(a), train_losses(b), rtol=1e-5)
    pa, pb = final_params(a), final_params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_allclose(pa[k], pb[k], rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.fixture(scope="module")
def one_process_run(tiny_bert_dir, rt_data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one_process")
    assert_ok(launch(train_args(tiny_bert_dir, rt_data_dir, workdir, steps=4)))
    return workdir


def test_two_processes_train_like_one(one_process_run, tiny_bert_dir, rt_data_dir, tmp_path):
    workdir = tmp_path / "two"
    results = launch(train_args(tiny_bert_dir, rt_data_dir, workdir, steps=4), num_processes=2)
    assert_ok(results)
    assert len(train_losses(workdir)) == 4
    assert_same_run(one_process_run, workdir)
    # process 0 alone writes the run's files; both report the same results
    results_two = json.loads((workdir / "summary.json").read_text())["results"]
    results_one = json.loads((one_process_run / "summary.json").read_text())["results"]
    assert results_two["validation"] == pytest.approx(results_one["validation"], rel=1e-5)
    assert "validation" in results[1].stdout  # process 1 ran to the end and printed its table


def test_two_process_run_resumes_from_its_checkpoint(
    one_process_run, tiny_bert_dir, rt_data_dir, tmp_path
):
    workdir = tmp_path / "resumed"
    assert_ok(launch(train_args(tiny_bert_dir, rt_data_dir, workdir, steps=2), num_processes=2))
    assert Checkpoints(workdir / "checkpoints").latest_step() == 2
    results = launch(train_args(tiny_bert_dir, rt_data_dir, workdir, steps=4), num_processes=2)
    assert_ok(results)
    for r in results:
        assert "Resumed from" in r.stdout + r.stderr
    assert json.loads((workdir / "summary.json").read_text())["resumed_from_step"] == 2
    assert_same_run(one_process_run, workdir)


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--num_processes=2", "--process_id=2", "--coordinator_address=127.0.0.1:1"],
            "outside [0, 2)",
        ),
        (["--num_processes=2", "--process_id=0"], "no coordinator address"),
        (
            ["--num_processes=2", "--process_id=0", "--coordinator_address=localhost"],
            "not host:port",
        ),
    ],
)
def test_bad_distributed_flags_fail_before_anything_starts(flags, message, tmp_path):
    (result,) = launch(["-m", "tlx.train", f"--config={CONFIG}", f"--workdir={tmp_path}", *flags])
    assert result.returncode != 0
    assert "cannot join the multi-process run" in result.stderr and message in result.stderr
    assert not (tmp_path / "config.json").exists()


def test_a_batch_that_does_not_split_over_every_device_is_rejected(monkeypatch):
    """Checked where the experiment is built, before data or compute (here 2 processes x 2
    devices, faked: no processes are started)."""
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "local_device_count", lambda: 2)
    config = minilm_rt_progressive.get_config()
    config.batch_size = 6
    expected = r"config.batch_size=6 must be divisible by the processes x devices per process"
    with pytest.raises(ValueError, match=expected + r" \(2 x 2 = 4\)"):
        process_shard(config)
    config.batch_size, config.data.eval_batch_size = 8, 10
    with pytest.raises(ValueError, match="config.data.eval_batch_size=10"):
        process_shard(config)
    config.data.eval_batch_size, config.feature_cache = 8, "memory"
    with pytest.raises(ValueError, match="feature_cache"):
        process_shard(config)
    config.feature_cache, config.sharding.model_axis = "off", 2
    with pytest.raises(ValueError, match="config.sharding"):
        process_shard(config)
