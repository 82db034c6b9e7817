"""kill -9 at random steps and in the middle of a checkpoint write: the run, restarted with the
same command, ends bit-identical to one that never stopped."""

import json
import os
import random

import pytest

from tests.faults.conftest import (
    STEPS,
    assert_same_end_state,
    end_state,
    launch,
    train_args,
)

KILLED = -9  # subprocess returncode of a process that died of SIGKILL


def test_killed_twice_at_random_steps_ends_bit_identical(
    tiny_bert_dir, rt_data_dir, tmp_path, straight_end_state
):
    # Random, and reproducible: the seed is in the failure message (TLX_FAULT_SEED reruns it).
    seed = int(os.environ.get("TLX_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    first = rng.randint(1, STEPS - 2)
    second = rng.randint(first + 1, STEPS - 1)
    workdir = tmp_path / "run"
    args = train_args(tiny_bert_dir, rt_data_dir, workdir)
    for step in (first, second):
        result = launch(args, fault=f"kill_at_step:{step}")
        assert result.returncode == KILLED, (seed, step, result.stderr[-3000:])
    result = launch(args)
    assert result.returncode == 0, (seed, result.stderr[-3000:])
    assert_same_end_state(end_state(workdir), straight_end_state)
    history = [json.loads(line) for line in (workdir / "history.jsonl").read_text().splitlines()]
    assert [h["event"] for h in history] == ["start", "resume", "resume"], seed


@pytest.mark.parametrize("fault", ["kill_between_items:4", "kill_in_commit:4"])
def test_killed_while_writing_a_checkpoint_resumes_from_the_one_before(
    fault, tiny_bert_dir, rt_data_dir, tmp_path, straight_end_state
):
    workdir = tmp_path / "run"
    args = train_args(tiny_bert_dir, rt_data_dir, workdir)
    result = launch(args, fault=fault)
    assert result.returncode == KILLED, result.stderr[-3000:]
    left = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    assert left[0] == "2" and left[1].startswith("4.orbax-checkpoint-tmp"), left  # half-written

    result = launch(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "at step 2" in result.stdout + result.stderr  # step 4 never counted as written
    assert not [p for p in (workdir / "checkpoints").iterdir() if "tmp" in p.name]
    assert_same_end_state(end_state(workdir), straight_end_state)
