"""Orbax checkpoints of a run: written atomically, verified on restore, restored for resume,
prediction or ``init_from``.

A checkpoint has up to four items so that each use reads only what it needs:
  params        the model parameters (what ``init_from`` takes from another run)
  model_state   non-parameter variables, e.g. BatchNorm statistics (absent when the model has none)
  train_state   optimizer state and the run's RNG key
  meta          JSON: step, stage index, and a CRC-32 of every array of the other items
Orbax writes each step into a temporary folder and renames it when complete, so a run killed while
saving leaves the previous checkpoint as the latest. The checksums travel inside ``meta``, so they
are committed by the same rename as the arrays they describe: there is no moment at which a
checkpoint exists without them. Orbax stores arrays raw (or zstd-compressed) with no checksum of its
own, so without them a flipped byte would load as a silently different model.

Every restore recomputes the checksums of what it read and raises
:class:`~tlx.errors.CheckpointIntegrityError` (naming the step, the array and, from the file list
``tlx_files.json`` written beside the items, the damaged files) on any difference; a checkpoint that
orbax cannot read at all raises :class:`~tlx.errors.CheckpointError`. Resume uses
:meth:`Checkpoints.restore_latest_intact`: it falls back to the newest intact checkpoint and moves the
damaged ones aside (``checkpoints_damaged/``), never deleting them.

With several processes every process calls save and restore (orbax synchronises them; process 0,
its primary host, writes the metadata and finalises the step), so the checkpoint folder must be
one that every process reaches (a shared file system). Arrays are saved as global, replicated
arrays and restored so, whatever the number of processes that wrote them.
"""

from __future__ import annotations

import contextlib
import json
import logging as std_logging
import os
import re
import shutil
import sys
import threading
import traceback
import zlib
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from tlx import run_folder
from tlx.errors import CheckpointError, CheckpointIntegrityError
from tlx.tree import flatten, unflatten

T = TypeVar("T")

CHECKSUMS = "checksums"  # the key of meta that holds {item: {array path: checksum}}
# The key of meta that names the parameters a checkpoint leaves out (never trained, the model's
# pretrained values): {"source": model.checkpoint, "checksums": {path: checksum}}.
BASE_PARAMS = "base_params"
FILE_LIST = "tlx_files.json"  # beside the items: every file's size and CRC-32, to name damage
DAMAGED_DIR = run_folder.DAMAGED_CHECKPOINTS  # beside checkpoints/: damaged steps go there
_ARRAY_ITEMS = ("params", "model_state", "train_state")


class Checkpoints:
    """A run's checkpoint folder. ``writer=True`` for the run that saves into it: only that one
    creates the folder and clears the temporary folders of a save that was killed; readers
    (prediction, ``init_from``) never change anything."""

    def __init__(self, directory: str | Path, max_to_keep: int = 2, *, writer: bool = False):
        self.directory = Path(directory).absolute()
        self.writer = writer
        self.manager = ocp.CheckpointManager(
            self.directory,
            item_handlers={
                "params": ocp.StandardCheckpointHandler(),
                "model_state": ocp.StandardCheckpointHandler(),
                "train_state": ocp.StandardCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            },
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                create=writer,
                cleanup_tmp_directories=writer,
                # Synchronous: the next train step may reuse buffers, and CPU runs gain little.
                enable_async_checkpointing=False,
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def delete(self, step: int) -> None:
        self.manager.delete(step)

    def save(
        self,
        step: int,
        params,
        train_state,
        meta: dict,
        model_state=None,
        *,
        omit: Collection[str] = (),
        base_source: str = "",
    ) -> None:
        """`omit`: '/'-paths of parameters left out of the files (a parameter-efficient run's
        frozen pretrained weights); their checksums stay in meta, so a restore takes them from
        the model's own weights and proves them the same (see _fill_base)."""
        if omit:
            flat = flatten(params)
            base = array_checksums({p: flat[p] for p in omit})
            params = unflatten({p: v for p, v in flat.items() if p not in base})
            meta = {**meta, BASE_PARAMS: {"source": base_source, "checksums": base}}
        trees = dict(params=params, train_state=train_state)
        if model_state:
            trees["model_state"] = model_state
        meta = {**meta, CHECKSUMS: {item: array_checksums(tree) for item, tree in trees.items()}}
        items = {item: ocp.args.StandardSave(_global(tree)) for item, tree in trees.items()}
        items["meta"] = ocp.args.JsonSave(meta)
        try:
            with _quiet_async_errors():
                self.manager.save(step, args=ocp.args.Composite(**items))
                self.manager.wait_until_finished()
        except Exception as e:  # e.g. no space left on device; orbax raises many types
            previous = [s for s in self.all_steps() if s != step]
            kept = f"step {previous[-1]} is intact" if previous else "there is no earlier one"
            raise CheckpointError(
                f"Could not write checkpoint step {step} to {self.directory} ({root_reason(e)}). "
                f"The previous checkpoint is untouched ({kept}). Free space or fix the folder, "
                "then rerun: the run resumes from the last intact checkpoint."
            ) from e
        if jax.process_index() == 0:
            write_file_list(self.directory / str(step))

    def restore(self, step: int, params_like, train_state_like, model_state_like=None, base=None):
        """(params, train_state, meta, model_state) restored into the structure, shapes and
        shardings of the given (abstract) trees, each array checked against its checksum.
        `base`: flat concrete values of the parameters a checkpoint may leave out (default: the
        concrete arrays of `params_like`)."""
        likes = dict(params=params_like, train_state=train_state_like)
        if model_state_like:
            likes["model_state"] = model_state_like
        restored = self._restore(step, likes, base)
        model_state = restored["model_state"] if model_state_like else model_state_like
        return restored["params"], restored["train_state"], restored["meta"], model_state

    def restore_latest_intact(self, restore_step: Callable[[int], T], log=print) -> T | None:
        """``restore_step(step)`` of the newest checkpoint it succeeds on (None: no checkpoint).

        A checkpoint that fails (unreadable, or its arrays differ from their checksums) is skipped
        for the next older one; once one is restored, the damaged newer ones are moved to
        ``checkpoints_damaged/`` (kept for inspection, and out of the way of the steps that the
        run will save again). When every checkpoint fails nothing is moved and the error says so.
        """
        failures: list[tuple[int, CheckpointError]] = []
        for step in reversed(self.all_steps()):
            try:
                result = restore_step(step)
            except CheckpointError as e:
                log(f"WARNING: {e}")
                failures.append((step, e))
                continue
            if failures:
                moved = [self._move_aside(s) for s, _ in failures]
                log(
                    f"Resuming from step {step}, the newest intact checkpoint; the damaged "
                    f"{'checkpoint was' if len(moved) == 1 else 'checkpoints were'} moved to "
                    + ", ".join(str(m) for m in moved)
                    + "."
                )
            return result
        if failures:
            raise CheckpointError(
                f"No intact checkpoint in {self.directory}: "
                + "; ".join(f"step {s}: {e}" for s, e in failures)
                + ". Nothing was changed. Start a new run in another --workdir, or move the "
                "checkpoints folder away to train this one from the start."
            )
        return None

    def restore_model_state(self, model_state_like, step: int | None = None):
        """Non-parameter variables (BatchNorm statistics) of a run, for prediction and
        ``init_from``; an empty like-tree gives it back unchanged."""
        if not model_state_like:
            return model_state_like
        step = self._existing_step(step)
        return self._restore(step, {"model_state": model_state_like})["model_state"]

    def restore_meta(self, step: int) -> dict:
        return self._restore(step, {})["meta"]

    def restore_params(self, step: int | None = None, params_like=None, base=None):
        """Parameters only (for ``init_from`` and prediction), checked against their checksums;
        `base` as for :meth:`restore` (without one, a partial checkpoint's own arrays only)."""
        step = self._existing_step(step)
        if params_like is None:  # shapes from the checkpoint's own metadata
            try:
                params_like = self.manager.item_metadata(step)["params"]
            except Exception as e:  # orbax raises many types on a damaged folder
                note = self._damage_note(step, ["params"])
                raise CheckpointError(self._unreadable(step, e) + note) from e
        return self._restore(step, {"params": params_like}, base)["params"]

    def intact_steps(self, exclude: int | None = None) -> list[int]:
        """Steps whose parameters pass their checks (newest first): what to suggest instead."""
        intact = []
        for step in reversed(self.all_steps()):
            if step == exclude:
                continue
            try:
                self.restore_params(step)
            except CheckpointError:
                continue
            intact.append(step)
        return intact

    def close(self) -> None:
        self.manager.close()

    def _existing_step(self, step: int | None) -> int:
        steps = self.all_steps()
        if step is None and steps:
            return steps[-1]
        if step is None or step not in steps:
            found = f"its steps are {steps}" if steps else "it holds no checkpoint"
            if not self.directory.is_dir():
                found = "that folder does not exist"
            wanted = "a checkpoint" if step is None else f"step {step}"
            raise CheckpointError(
                f"Expected {wanted} in {self.directory} (a folder written by tlx.train, "
                f"workdir/checkpoints/<step>), but {found}. Check the --workdir, init_from path "
                "or step."
            )
        return step

    def _restore(self, step: int, likes: dict, base=None) -> dict:
        """Restore `likes`' items and meta at `step`, then verify every restored array (and the
        base values of the parameters the checkpoint left out)."""
        omitted = {}
        if "params" in likes:
            omitted = self.restore_meta(step).get(BASE_PARAMS, {}).get("checksums", {})
        if omitted:
            flat_like = flatten(likes["params"])
            if base is None:  # the like-tree's own concrete arrays
                base = {
                    p: v for p, v in flat_like.items() if isinstance(v, (jax.Array, np.ndarray))
                }
            kept = {p: v for p, v in flat_like.items() if p not in omitted}
            likes = {**likes, "params": unflatten(kept)}
        args = {item: ocp.args.StandardRestore(_abstract(like)) for item, like in likes.items()}
        args["meta"] = ocp.args.JsonRestore()
        try:
            with _quiet_async_errors():
                restored = dict(self.manager.restore(step, args=ocp.args.Composite(**args)))
        except Exception as e:  # orbax raises many types (ValueError, JSONDecodeError, ...)
            raise CheckpointError(self._unreadable(step, e) + self._damage_note(step, likes)) from e
        restored["meta"] = meta = dict(restored["meta"])
        expected_all = meta.get(CHECKSUMS)
        if expected_all is None:  # written before tlx checksummed its checkpoints
            logging.warning("Checkpoint step %d in %s has no checksums.", step, self.directory)
            return restored
        for item in likes:
            expected = expected_all.get(item, {})
            found = array_checksums(restored[item])
            bad = sorted(
                p for p in expected.keys() | found.keys() if expected.get(p) != found.get(p)
            )
            if bad:
                raise CheckpointIntegrityError(
                    f"Checkpoint step {step} in {self.directory} is damaged: {len(bad)} array(s) "
                    f"of {item!r} differ from the checksums written with them "
                    f"({_listed(bad)})." + self._damage_note(step, [item])
                )
        if omitted and base:
            restored["params"] = self._fill_base(step, restored, omitted, base)
        return restored

    def _fill_base(self, step: int, restored: dict, omitted: dict, base) -> dict:
        """The restored parameters with the left-out ones taken from `base`, which must hold
        exactly the values the checkpoint was trained from."""
        source = restored["meta"].get(BASE_PARAMS, {}).get("source") or "the run's model"
        missing = [p for p in omitted if p not in base]
        if missing:
            raise CheckpointError(
                f"Checkpoint step {step} in {self.directory} holds only what training changed; "
                f"{len(missing)} frozen parameter(s) come from {source} ({_listed(missing)}), "
                "which were not given. Restore it with the run's own model."
            )
        found = array_checksums({p: base[p] for p in omitted})
        differ = sorted(p for p in omitted if found[p] != omitted[p])
        if differ:
            raise CheckpointIntegrityError(
                f"Checkpoint step {step} in {self.directory} was trained from other base weights "
                f"than {source} gives now: {len(differ)} frozen parameter(s) differ "
                f"({_listed(differ)}). Point model.checkpoint at the weights the run used."
            )
        return unflatten({**flatten(restored["params"]), **{p: base[p] for p in omitted}})

    def _damage_note(self, step: int, items) -> str:
        """The files of `items` that changed since the step was written, as a sentence: only
        looked up once something failed (checking every file on each restore would cost more
        than the restore's checksums do)."""
        damaged = damaged_files(self.directory / str(step), items=(*items, "meta"))
        return f" Files changed since it was written: {_listed(damaged)}." if damaged else ""

    def _unreadable(self, step: int, error: Exception) -> str:
        return (
            f"Checkpoint step {step} in {self.directory} cannot be read ({root_reason(error)}). "
            "It may be damaged, or written by a run of a different model or plan."
        )

    def _move_aside(self, step: int) -> Path:
        target = self.directory.parent / DAMAGED_DIR / str(step)
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():  # damaged twice at the same step: keep both
                target = target.with_name(f"{step}_{len(list(target.parent.iterdir()))}")
            shutil.move(str(self.directory / str(step)), str(target))
        self.manager.reload()
        return target


def root_reason(error: BaseException, most_chars: int = 300) -> str:
    """The innermost cause of an error, on one line: orbax wraps the real reason (TensorStore's
    OUT_OF_RANGE, an OS error) in exceptions of its own. An OS error code it carries is spelled
    out first ("No space left on device"), since the rest is a long path."""
    while error.__cause__ or error.__context__:
        error = error.__cause__ or error.__context__
    text = " ".join(str(error).split()) or type(error).__name__
    code = re.search(r"os_error_code='?(\d+)", text)
    if isinstance(error, OSError) and error.errno:
        code_text = f"{os.strerror(error.errno)}: "
    elif code:
        code_text = f"{os.strerror(int(code.group(1)))}: "
    else:
        code_text = ""
    if len(text) > most_chars:
        text = text[: most_chars - 3] + "..."
    return f"{code_text}{type(error).__name__}: {text}"


def array_checksums(tree) -> dict[str, str]:
    """'crc32:<hex>:<bytes>' of every array leaf's bytes, by its '/'-joined path.

    CRC-32 (zlib, about 6 GB/s here) catches what damages files by accident: flipped bits, blocks
    overwritten, truncation. It is not a defence against someone who rewrites a checkpoint on
    purpose (they could rewrite the checksums too).
    """
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): _checksum(_host_bytes(x))
        for path, x in leaves
    }


def _host_bytes(x) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # global and replicated
        x = x.addressable_shards[0].data
    return np.ascontiguousarray(np.asarray(x)).reshape(-1).view(np.uint8)


def _checksum(data) -> str:
    return f"crc32:{zlib.crc32(data):08x}:{len(data)}"


def write_file_list(step_dir: Path) -> None:
    """Every file of a finished step with its size and CRC-32, written atomically beside it.

    Only a diagnosis: the arrays' own checksums decide whether a checkpoint is intact; this list
    names the files that changed when one is not.
    """
    files = {}
    for path in sorted(step_dir.rglob("*")):
        if path.is_file() and path.name != FILE_LIST:
            files[str(path.relative_to(step_dir))] = _file_checksum(path)
    run_folder.write_atomic(step_dir / FILE_LIST, json.dumps(files, indent=0))


def damaged_files(step_dir: Path, items=None) -> list[str]:
    """Files of a step (of `items`' folders and the step's own files, when given) that differ
    from its file list, missing ones included; [] when the step has no list."""
    try:
        files = json.loads((step_dir / FILE_LIST).read_text())
    except (OSError, ValueError):
        return []
    damaged = []
    for name, checksum in files.items():
        top = Path(name).parts[0]
        if items is not None and name != top and top not in items:
            continue
        path = step_dir / name
        if not path.is_file():
            damaged.append(f"{name} (missing)")
        elif _file_checksum(path) != checksum:
            damaged.append(name)
    return damaged


def _listed(names: list[str], most: int = 3) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


@contextlib.contextmanager
def _quiet_async_errors():
    """While orbax saves or restores. When one array write or read fails, orbax abandons the
    others, and each of its threads, coroutines and callbacks then reports its own copy of the
    failure (a page of TensorStore spec, or 'Event loop is closed', dozens of times) through
    sys.excepthook, sys.unraisablehook, threading.excepthook and ERROR logs, some of them after
    the call returns. Those reports from orbax's machinery go to the DEBUG log instead; the real
    error is raised once, with its root cause, by the caller. Reports from any other code are
    printed as before."""
    _install_orbax_noise_filters()
    yield


def _from_orbax_machinery(tb) -> bool:
    names = [f.filename for f in traceback.extract_tb(tb)] if tb is not None else []
    return any("/orbax/" in n or "tensorstore" in n for n in names)


# What TensorStore's callbacks raise (through sys.excepthook, with only asyncio's frames) when
# orbax has closed the event loop of a failed save or restore.
_ABANDONED_LOOP_ERRORS = ("Event loop is closed", "cannot schedule new futures after shutdown")


def _install_orbax_noise_filters() -> None:
    if getattr(sys.unraisablehook, "_tlx_filter", False):
        return
    previous_unraisable, previous_except = sys.unraisablehook, sys.excepthook
    previous_thread = threading.excepthook

    def abandoned(value, tb) -> bool:
        loop_closed = isinstance(value, RuntimeError) and str(value) in _ABANDONED_LOOP_ERRORS
        return loop_closed or _from_orbax_machinery(tb)

    def unraisable(info):  # also what C callbacks (TensorStore's) report through
        if abandoned(info.exc_value, info.exc_traceback):
            logging.debug("orbax, abandoning a failed save or restore: %s", info.exc_value)
        else:
            previous_unraisable(info)

    def excepthook(kind, value, tb):
        if abandoned(value, tb):
            logging.debug("orbax, abandoning a failed save or restore: %s", value)
        else:
            previous_except(kind, value, tb)

    def thread_hook(args):
        if _from_orbax_machinery(args.exc_traceback):
            logging.debug("orbax thread %s: %s", args.thread, args.exc_value)
        else:
            previous_thread(args)

    unraisable._tlx_filter = True
    sys.unraisablehook, sys.excepthook, threading.excepthook = unraisable, excepthook, thread_hook
    std_logging.getLogger("absl").addFilter(_OrbaxErrorLogs())
    # asyncio's "Task exception was never retrieved" for orbax's abandoned writes
    std_logging.getLogger("asyncio").addFilter(_OrbaxErrorLogs())


class _OrbaxErrorLogs(std_logging.Filter):
    """Orbax's own ERROR logs of a failure it then raises: to DEBUG (the raise is reported)."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        text = str(record.msg)
        # asyncio's "Future exception was never retrieved" for a TensorStore read or write
        # abandoned by orbax names only the OCDBT store it failed on.
        from_orbax = any(mark in text for mark in ("/orbax/", "OCDBT", "TensorStore"))
        from_orbax = from_orbax or "/orbax/" in record.pathname
        if record.exc_info and _from_orbax_machinery(record.exc_info[2]):
            from_orbax = True
        if record.levelno >= std_logging.ERROR and from_orbax:
            logging.debug("orbax: %s", record.getMessage())
            return False
        return True


def _file_checksum(path: Path) -> str:
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    return f"crc32:{crc:08x}:{size}"


def _abstract(tree):
    """Target shapes and dtypes; arrays keep their sharding, anything else lands on one device
    (several processes: replicated on every device, since orbax restores only global arrays).

    Never the saved sharding: a run trained on 8 devices must restore on 1 (and vice versa).
    """
    multi = jax.process_count() > 1
    default = _replicated() if multi else jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def leaf(x):
        sharding = getattr(x, "sharding", None)
        if not isinstance(sharding, jax.sharding.Sharding) or (
            multi and sharding.is_fully_addressable  # one process's array
        ):
            sharding = default
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    return jax.tree_util.tree_map(leaf, tree)


def _replicated():
    from tlx import parallel

    return parallel.replicated(parallel.make_mesh())


def _global(tree):
    """Several processes: process-local jax arrays (e.g. the RNG key) as global replicated ones,
    which orbax requires; numpy and global arrays as they are. One process: the tree."""
    if jax.process_count() == 1:
        return tree
    from tlx import parallel

    mesh = parallel.make_mesh()
    local = lambda x: isinstance(x, jax.Array) and x.is_fully_addressable
    return jax.tree_util.tree_map(
        lambda x: parallel.put_replicated(x, mesh) if local(x) else x, tree
    )
