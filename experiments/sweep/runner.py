"""Running cells: one `python -m tlx.train` subprocess each, a few at a time, each cell locked
while it runs; all of them stopped on an interrupt."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from experiments.sweep.plan import LOCK_FILE, LOG_FILE, Cell, Sweep
from tlx import run_folder


@dataclasses.dataclass
class Result:
    cell: Cell
    status: str  # finished | skipped | failed | busy | dry-run
    returncode: int | None = None
    seconds: float = 0.0
    log_tail: str = ""

    def summary(self) -> dict | None:
        return run_folder.read_summary(self.cell.workdir)


def tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def latest_step(workdir: Path) -> int:
    """The last step metrics.jsonl has reached (0 before the first log)."""
    text = tail(workdir / run_folder.METRICS, lines=20)
    step = 0
    for line in text.splitlines():
        try:
            step = max(step, int(json.loads(line).get("step", 0)))
        except (ValueError, AttributeError):
            continue
    return step


class Runner:
    """Runs cells as subprocesses, `workers` at a time; kills them all if interrupted."""

    def __init__(self, sweep: Sweep, workers: int = 1, env: Mapping[str, str] | None = None):
        self.sweep = sweep
        self.workers = max(1, workers)
        self.env = dict(env) if env is not None else None
        self.events: queue.Queue = queue.Queue()
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def run_cell(self, cell: Cell, command: list[str]) -> Result:
        if self._stopping:  # queued behind a cell that was stopped: leave no trace
            return Result(cell, "failed", returncode=-signal.SIGTERM)
        cell.workdir.mkdir(parents=True, exist_ok=True)
        lock = open(cell.workdir / LOCK_FILE, "w")  # noqa: SIM115 (held while the cell runs)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return Result(cell, "busy")
            if cell.state() == "finished":  # another sweep finished it meanwhile
                return Result(cell, "skipped")
            self.events.put(("start", cell))
            started = time.perf_counter()
            log_path = cell.workdir / LOG_FILE
            with open(log_path, "a") as log:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write(f"=== {stamp} experiments.sweep: {shlex.join(command)}\n")
                log.flush()
                with self._lock:
                    if self._stopping:
                        return Result(cell, "failed", returncode=-signal.SIGTERM)
                    proc = subprocess.Popen(
                        command, stdout=log, stderr=subprocess.STDOUT, env=self.env
                    )
                    self._procs.add(proc)
                try:
                    code = proc.wait()
                finally:
                    with self._lock:
                        self._procs.discard(proc)
            seconds = time.perf_counter() - started
            if code != 0:
                return Result(cell, "failed", code, seconds, tail(log_path))
            if cell.state() != "finished":
                return Result(
                    cell, "failed", code, seconds, "exited 0 without summary.json at total_steps"
                )
            return Result(cell, "finished", code, seconds)
        finally:
            lock.close()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            procs = list(self._procs)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def run(
        self,
        cells: Sequence[Cell],
        command: Callable[[Cell], list[str]] | None = None,
        report: Callable[[str, Cell, Result | None], None] | None = None,
        poll: Callable[[], None] | None = None,
    ) -> list[Result]:
        """Run `cells` (already known not to be finished); `report(event, cell, result)` is
        called from this thread on 'start' and 'done', `poll()` about once a second."""
        command = command or self.sweep.command
        report = report or (lambda *_: None)
        results = {}
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sweep")
        try:
            pending = {pool.submit(self.run_cell, c, command(c)): c for c in cells}
            while pending:
                done, _ = wait(list(pending), timeout=1.0, return_when=FIRST_COMPLETED)
                self._drain(report)
                for future in done:
                    cell = pending.pop(future)
                    results[cell.name] = future.result()
                    report("done", cell, results[cell.name])
                if poll:
                    poll()
            self._drain(report)
        except BaseException:
            self.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return [results[c.name] for c in cells]

    def _drain(self, report) -> None:
        while True:
            try:
                event, cell = self.events.get_nowait()
            except queue.Empty:
                return
            report(event, cell, None)
