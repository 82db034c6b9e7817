"""Run ``tlx.train`` with one fault injected, for the fault tests (never used outside tests).

TLX_FAULT=kill_at_step:K        SIGKILL right after step K's training metrics are logged
TLX_FAULT=kill_in_commit:S      SIGKILL while saving step S: every item is written to the
                                temporary folder, which is never renamed into place
TLX_FAULT=kill_between_items:S  SIGKILL while saving step S, after the first array item

python -m tests.faults.launch <tlx.train flags>
"""

import os
import runpy
import signal
import sys


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _inject(fault: str) -> None:
    kind, _, value = fault.partition(":")
    at = int(value)
    if kind == "kill_at_step":
        from tlx import metrics

        write = metrics.MetricWriter.write

        def write_then_die(self, step, split, values):
            write(self, step, split, values)
            if step == at and split == "train":
                self.close()  # what was logged stays, as on a real machine's disk
                _die()

        metrics.MetricWriter.write = write_then_die
    elif kind == "kill_in_commit":
        from orbax.checkpoint._src.path import atomicity

        finalize = atomicity.AtomicRenameTemporaryPath.finalize

        async def finalize_or_die(self, *args, **kwargs):
            if self.get_final().name == str(at):
                _die()
            return await finalize(self, *args, **kwargs)

        atomicity.AtomicRenameTemporaryPath.finalize = finalize_or_die
    elif kind == "kill_between_items":
        import orbax.checkpoint as ocp

        cls = ocp.StandardCheckpointHandler
        save = cls.async_save
        saved = []

        async def save_or_die(self, directory, *args, **kwargs):
            if f"/{at}." in str(directory) or f"/{at}/" in str(directory):
                if saved:
                    _die()
                saved.append(directory)
            return await save(self, directory, *args, **kwargs)

        cls.async_save = save_or_die
    else:
        raise SystemExit(f"unknown TLX_FAULT {fault!r}")


if __name__ == "__main__":
    if os.environ.get("TLX_FAULT"):
        _inject(os.environ["TLX_FAULT"])
    sys.argv = ["tlx.train", *sys.argv[1:]]
    runpy.run_module("tlx.train", run_name="__main__", alter_sys=True)
