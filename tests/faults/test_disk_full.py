"""A disk that fills while a checkpoint is written: a clear error, the previous checkpoint
intact, and once there is room again the run ends bit-identical to one that never stopped."""

import os
import subprocess
import sys
import uuid

import pytest

from tests.conftest import REPO
from tests.faults.conftest import (
    assert_same_end_state,
    end_state,
    launch,
    short_error,
    train_args,
)


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 64 MB tmpfs (needs root); skipped where mounting is not allowed."""
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); see the RLIMIT test")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder, leave_bytes: int):
    """A file that takes all but `leave_bytes` of the folder's filesystem."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    filler = folder / "filler"
    with open(filler, "wb") as f:
        f.truncate(0)
        chunk = b"\0" * (1 << 20)
        remaining = free - leave_bytes
        while remaining > 0:
            f.write(chunk[: min(len(chunk), remaining)])
            remaining -= len(chunk)
    return filler


def test_disk_full_during_a_checkpoint(
    tiny_filesystem, tiny_bert_dir, rt_data_dir, straight_end_state
):
    workdir = tiny_filesystem / "run"
    args = train_args(tiny_bert_dir, rt_data_dir, workdir)
    assert launch(args, fault="kill_at_step:3").returncode == -9  # checkpoint 2 on disk
    filler = fill(tiny_filesystem, leave_bytes=256 << 10)  # the next checkpoint needs ~12 MB

    message = short_error(launch(args), most_lines=16)
    assert "Could not write checkpoint step 4" in message and "step 2 is intact" in message
    assert "No space left on device" in message or "ENOSPC" in message, message

    filler.unlink()
    result = launch(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "at step 2" in result.stdout + result.stderr
    assert_same_end_state(end_state(workdir), straight_end_state)


def test_file_size_limit_during_the_first_checkpoint(tiny_bert_dir, rt_data_dir, tmp_path):
    """No mount needed: a 1 MB limit on any file written (the embeddings' file is ~4 MB)."""
    workdir = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"  # its files may pass the limit too
    train = [sys.executable, "-m", "tlx.train", *train_args(tiny_bert_dir, rt_data_dir, workdir)]
    # The limit is set by a shell that then becomes tlx.train (no Python code between fork and
    # exec); with SIGXFSZ ignored, writes past it fail with EFBIG instead of killing the process.
    result = subprocess.run(
        ["bash", "-c", 'ulimit -f 1024 && trap "" XFSZ && exec "$@"', "limited", *train],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    message = short_error(result, most_lines=16)
    assert "Could not write checkpoint step 2" in message and "no earlier one" in message
    assert not [p for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
