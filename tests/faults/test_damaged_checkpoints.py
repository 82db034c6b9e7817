"""Bytes flipped in, files truncated from, metadata garbled in the latest checkpoint: prediction
refuses with a short message naming the step and an intact one; resume falls back to the newest
intact checkpoint and ends bit-identical to a run that was never damaged."""

import shutil
from pathlib import Path

import pytest

from tests.faults.conftest import (
    STEPS,
    assert_same_end_state,
    end_state,
    launch,
    predict,
    short_error,
    snapshot,
    train_args,
)

LATEST, PREVIOUS = STEPS, STEPS - 2


def biggest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def flip_bytes(step_dir: Path) -> None:
    """4 KB of 0xFF inside the largest parameter file (the word embeddings)."""
    with open(biggest_file(step_dir / "params"), "r+b") as f:
        f.seek(1024)
        f.write(b"\xff" * 4096)


def flip_bytes_no_file_list(step_dir: Path) -> None:
    """The same, with the file list gone: the checksums inside the checkpoint still catch it."""
    (step_dir / "tlx_files.json").unlink()
    flip_bytes(step_dir)


def truncate(step_dir: Path, item: str = "params") -> None:
    path = biggest_file(step_dir / item)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def truncate_optimizer_state(step_dir: Path) -> None:
    """Predict does not read it (and need not refuse); resume does."""
    truncate(step_dir, "train_state")


def garble_metadata(step_dir: Path) -> None:
    (step_dir / "params" / "_METADATA").write_text('{"tree_metadata": {oops')


DAMAGE = [flip_bytes, flip_bytes_no_file_list, truncate, garble_metadata]


@pytest.fixture
def run_copy(straight_run, tmp_path) -> Path:
    workdir = tmp_path / "run"
    shutil.copytree(straight_run, workdir)
    return workdir


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_predict_refuses_a_damaged_checkpoint_and_names_an_intact_one(damage, run_copy):
    damage(run_copy / "checkpoints" / str(LATEST))
    before = snapshot(run_copy)
    result = predict(run_copy, "A tedious, joyless slog.")
    message = short_error(result)
    assert f"step {LATEST}" in message and f"--step={PREVIOUS}" in message, message
    assert snapshot(run_copy) == before  # nothing written, nothing moved
    result = predict(run_copy, f"--step={PREVIOUS}", "A tedious, joyless slog.")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("damage", [flip_bytes, truncate_optimizer_state], ids=lambda f: f.__name__)
def test_resume_falls_back_to_the_newest_intact_checkpoint(
    damage, run_copy, tiny_bert_dir, rt_data_dir, straight_end_state
):
    damage(run_copy / "checkpoints" / str(LATEST))
    damaged = snapshot(run_copy / "checkpoints" / str(LATEST))
    result = launch(train_args(tiny_bert_dir, rt_data_dir, run_copy))
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert f"Resuming from step {PREVIOUS}, the newest intact checkpoint" in output
    # kept, as it was, for inspection
    assert snapshot(run_copy / "checkpoints_damaged" / str(LATEST)) == damaged
    assert_same_end_state(end_state(run_copy), straight_end_state)


def test_resume_with_no_intact_checkpoint_refuses_and_changes_nothing(
    run_copy, tiny_bert_dir, rt_data_dir
):
    for step in (LATEST, PREVIOUS):
        flip_bytes(run_copy / "checkpoints" / str(step))
    before = snapshot(run_copy)
    result = launch(train_args(tiny_bert_dir, rt_data_dir, run_copy))
    message = short_error(result, most_lines=16)
    assert "No intact checkpoint" in message and "Nothing was changed" in message
    assert snapshot(run_copy) == before


def test_init_from_a_damaged_run_is_refused(run_copy, tiny_bert_dir, rt_data_dir, tmp_path):
    flip_bytes(run_copy / "checkpoints" / str(LATEST))
    workdir = tmp_path / "new"
    args = train_args(tiny_bert_dir, rt_data_dir, workdir, f"--config.init_from={run_copy}")
    message = short_error(launch(args, module="tlx.train"), most_lines=16)
    assert f"config.init_from='{run_copy}'" in message and f"step {LATEST}" in message
    assert "damaged" in message
    assert not (workdir / "checkpoints").exists() or not any((workdir / "checkpoints").iterdir())
