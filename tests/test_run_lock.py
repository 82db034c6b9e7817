"""tlx.run_lock: one training process per run folder; the lock goes with its holder however it
exits, and a start refused before writing anything leaves no folder behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tlx import run_lock
from tlx.run_lock import WorkdirBusyError


def test_a_held_folder_refuses_a_second_holder_and_names_the_first(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock, "WAIT_S", 0.1)
    (tmp_path / "config.json").write_text("{}")  # a run's folder: the lock file stays in it
    assert run_lock.holder(tmp_path) is None  # never held
    with run_lock.hold(tmp_path):
        info = run_lock.holder(tmp_path)
        argv = Path("/proc/self/cmdline").read_bytes().split(b"\0")
        ours = " ".join(a.decode() for a in argv if a)
        assert info == {"pid": os.getpid(), "command": ours}  # this process, as the kernel says
        # another open file of the lock: another holder
        with pytest.raises(WorkdirBusyError) as refused, run_lock.hold(tmp_path):
            pass
        message = str(refused.value)
        assert f"the run folder {tmp_path} is in use by process {os.getpid()} (" in message
        assert "wait for that run to finish" in message and "another --workdir" in message
        assert run_lock.holder(tmp_path) == info  # the refused attempt took nothing away
    assert run_lock.holder(tmp_path) is None
    with run_lock.hold(tmp_path):  # free again
        pass
    assert (tmp_path / run_lock.LOCK).read_bytes() == b""  # never written: a refusal writes nothing
    assert (tmp_path / "config.json").exists()


def test_a_start_that_wrote_nothing_leaves_no_folder(tmp_path):
    with pytest.raises(ValueError, match="refused"), run_lock.hold(tmp_path / "run"):
        raise ValueError("refused while building")
    assert not (tmp_path / "run").exists()
    with run_lock.hold(tmp_path / "kept"):
        (tmp_path / "kept" / "metrics.jsonl").write_text("")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [run_lock.LOCK, "metrics.jsonl"]


def test_a_killed_holder_frees_the_folder(tmp_path):
    code = (
        "import sys, time\nfrom tlx import run_lock\n"
        "with run_lock.hold(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n"
    )
    (tmp_path / "run").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        assert run_lock.holder(tmp_path / "run")["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while run_lock.holder(tmp_path / "run") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_lock.holder(tmp_path / "run") is None  # the kernel dropped it with the process
    with run_lock.hold(tmp_path / "run"):
        assert run_lock.holder(tmp_path / "run")["pid"] == os.getpid()
