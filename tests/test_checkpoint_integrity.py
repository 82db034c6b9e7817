"""Checkpoint checksums (tlx.checkpoint): written with every save, checked on every restore."""

import numpy as np
import orbax.checkpoint as ocp
import pytest

from tlx.checkpoint import DAMAGED_DIR, FILE_LIST, Checkpoints, array_checksums
from tlx.errors import CheckpointError, CheckpointIntegrityError

# Random bits do not compress, so orbax stores them raw, with no checksum of its own (zstd would
# catch some damage to compressed data itself): what the tlx checksums are for.
KERNEL = np.random.default_rng(0).integers(0, 2**32, (256, 256), dtype=np.uint32)
PARAMS = {"dense": {"kernel": KERNEL}}


def train_state(step):
    return {
        "opt_state": {"mu": KERNEL + np.uint32(step)},
        "rng": np.arange(2, dtype=np.uint32),
    }


def saved(tmp_path, steps=(2, 4)) -> Checkpoints:
    checkpoints = Checkpoints(tmp_path / "checkpoints", writer=True)
    for step in steps:
        checkpoints.save(step, PARAMS, train_state(step), {"step": step, "stage": 0})
    return checkpoints


def flip(step_dir, item="params"):
    data = max(
        (p for p in (step_dir / item).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    with open(data, "r+b") as f:
        f.seek(64)
        f.write(b"\xff" * 512)
    return data


def test_checksums_name_every_array_and_change_with_one_bit():
    sums = array_checksums(PARAMS)
    assert list(sums) == ["dense/kernel"]
    changed = KERNEL.copy()
    changed[123, 45] ^= 1  # one bit
    assert array_checksums({"dense": {"kernel": changed}}) != sums


def test_an_intact_checkpoint_restores_exactly(tmp_path):
    checkpoints = saved(tmp_path)
    params, state, meta, _ = checkpoints.restore(4, PARAMS, train_state(4))
    np.testing.assert_array_equal(params["dense"]["kernel"], PARAMS["dense"]["kernel"])
    np.testing.assert_array_equal(state["opt_state"]["mu"], train_state(4)["opt_state"]["mu"])
    assert meta["step"] == 4 and set(meta["checksums"]) == {"params", "train_state"}


def test_flipped_bytes_are_caught_naming_step_array_and_file(tmp_path):
    checkpoints = saved(tmp_path)
    data = flip(tmp_path / "checkpoints" / "4")
    with pytest.raises(CheckpointIntegrityError) as err:
        checkpoints.restore_params(4)
    message = str(err.value)
    assert "step 4" in message and "dense/kernel" in message and data.name in message
    np.testing.assert_array_equal(
        checkpoints.restore_params(2)["dense"]["kernel"], PARAMS["dense"]["kernel"]
    )
    assert checkpoints.intact_steps(exclude=4) == [2]


def test_the_checksums_alone_catch_damage_without_the_file_list(tmp_path):
    checkpoints = saved(tmp_path)
    (tmp_path / "checkpoints" / "4" / FILE_LIST).unlink()
    flip(tmp_path / "checkpoints" / "4", item="train_state")
    with pytest.raises(CheckpointIntegrityError, match="opt_state/mu"):
        checkpoints.restore(4, PARAMS, train_state(4))


def test_resume_falls_back_and_moves_the_damaged_step_aside(tmp_path):
    checkpoints = saved(tmp_path)
    flip(tmp_path / "checkpoints" / "4")
    logs = []
    step = checkpoints.restore_latest_intact(
        lambda s: checkpoints.restore(s, PARAMS, train_state(s))[2]["step"], logs.append
    )
    assert step == 2
    assert checkpoints.all_steps() == [2]
    assert (tmp_path / DAMAGED_DIR / "4" / "params").is_dir()
    assert any("newest intact checkpoint" in line for line in logs)
    checkpoints.save(4, PARAMS, train_state(4), {"step": 4, "stage": 0})  # the step is free again
    assert checkpoints.all_steps() == [2, 4]


def test_resume_with_every_checkpoint_damaged_refuses_and_moves_nothing(tmp_path):
    checkpoints = saved(tmp_path)
    for step in (2, 4):
        flip(tmp_path / "checkpoints" / str(step))
    with pytest.raises(CheckpointError, match="No intact checkpoint.*Nothing was changed"):
        checkpoints.restore_latest_intact(lambda s: checkpoints.restore(s, PARAMS, train_state(s)))
    assert checkpoints.all_steps() == [2, 4] and not (tmp_path / DAMAGED_DIR).exists()


def test_an_empty_folder_resumes_nothing(tmp_path):
    checkpoints = Checkpoints(tmp_path / "checkpoints", writer=True)
    assert checkpoints.restore_latest_intact(lambda s: pytest.fail("nothing to restore")) is None


def test_a_missing_step_or_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Checkpoints(tmp_path / "nowhere").restore_params()
    assert not (tmp_path / "nowhere").exists()  # a reader creates nothing
    with pytest.raises(CheckpointError, match=r"step 3 .* its steps are \[2, 4\]"):
        saved(tmp_path).restore_params(3)


def test_a_checkpoint_from_before_checksums_still_loads(tmp_path):
    manager = ocp.CheckpointManager(
        tmp_path / "checkpoints",
        item_handlers={
            "params": ocp.StandardCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        },
    )
    args = dict(
        params=ocp.args.StandardSave(PARAMS), meta=ocp.args.JsonSave({"step": 1, "stage": 0})
    )
    manager.save(1, args=ocp.args.Composite(**args))
    manager.wait_until_finished()
    restored = Checkpoints(tmp_path / "checkpoints").restore_params(1)
    np.testing.assert_array_equal(restored["dense"]["kernel"], PARAMS["dense"]["kernel"])
