"""One training process per run folder: ``tlx.train`` holds an exclusive lock on its workdir.

Two runs started on one folder (a sweep resumed twice by mistake, a second terminal) would both
write checkpoints, metrics and the summary, each unaware of the other's steps, and the folder
would hold neither run. The second is refused before anything is built, with who holds the folder.

The lock is ``flock`` on ``workdir/.tlx.lock``: the kernel drops it when the holder exits however
it exits (a kill included), so a stale lock never blocks a resume. The file stays empty (a refused
resume writes nothing, not even there): who holds it comes from the kernel's lock table. A run
refused before it wrote anything (a bad value found while building) takes the file and the folder
it created away again. Only process 0 of a multi-process run takes it (every process shares the
workdir). ``holder`` says who holds a folder; its probe takes the lock for an instant, so
``hold`` retries for ``WAIT_S`` before it refuses. (Sweeps lock a cell of their own as well:
experiments.sweep skips a cell another sweep is running.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from tlx.errors import TlxError

LOCK = ".tlx.lock"
WAIT_S = 2.0  # longer than any probe by holder(), far shorter than any run


class WorkdirBusyError(TlxError, RuntimeError):
    """Another process is training in this run folder."""


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder_pid(path: Path) -> int | None:
    """The pid holding the flock on `path`, from the kernel's table (Linux: /proc/locks, one line
    a lock: "1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF"), or None."""
    try:
        inode = str(os.stat(path).st_ino)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == inode:
            return int(fields[4])  # a waiter's line reads "1: -> FLOCK ...": not matched
    return None


def _who(path: Path) -> dict:
    """{pid, command} of the process holding `path`, as far as the kernel tells ({} if not)."""
    pid = _holder_pid(path)
    if pid is None:
        return {}
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        command = " ".join(a.decode(errors="replace") for a in argv if a)
    except OSError:
        command = ""
    return {"pid": pid, "command": command}


def holder(workdir: str | Path) -> dict | None:
    """Who is training in `workdir` now ({pid, command}; {} if the kernel does not say), or
    None when nobody is."""
    path = Path(workdir) / LOCK
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            return None  # released when fd closes
        return _who(path)
    finally:
        os.close(fd)


def describe(info: dict) -> str:
    if not info:
        return "another process"
    command = info["command"]
    shown = command if len(command) <= 160 else command[:157] + "..."
    return f"process {info['pid']}" + (f" ({shown})" if shown else "")


@contextlib.contextmanager
def hold(workdir: str | Path, program: str = "tlx.train") -> Iterator[None]:
    """Hold `workdir` for this process; WorkdirBusyError if another process does."""
    folder = Path(workdir)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)  # never written: see the docstring
    try:
        deadline = time.monotonic() + WAIT_S
        while not _try_lock(fd, fcntl.LOCK_EX):
            if time.monotonic() > deadline:
                raise WorkdirBusyError(
                    f"{program}: the run folder {folder} is in use by {describe(_who(path))}"
                    ". Two runs in one folder would overwrite each other's checkpoints and "
                    "metrics: wait for that run to finish (rerunning then resumes it), stop it, "
                    "or pass another --workdir."
                )
            time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock
        if created and os.listdir(folder) == [LOCK]:  # refused before writing: leave no trace
            (folder / LOCK).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
