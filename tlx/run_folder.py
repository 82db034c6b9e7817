"""A run's folder: its file names, and the rule for resuming it with a config.

    workdir/
      config.json        the config the run was started with (never rewritten)
      history.jsonl      one line per start and resume: when, from which step, what changed
      metrics.jsonl      train / eval metrics by step (tlx.metrics)
      summary.json       final results, written when the run reaches its last step
      checkpoints/       orbax steps (tlx.checkpoint); checkpoints_damaged/ the ones set aside
      checkpoints_best/  the step selected on validation (config.selection; tlx.selection)
      audit/             the freeze audit of each stage; tensorboard/ the same metrics as events
      .tlx.lock          held by the process training here (tlx.run_lock: one run per folder)

The readers below are the one way to read a run folder: its config as it now stands
(:func:`read_config`: config.json with the changes of later resumes applied), its metrics, its
summary, and whether it is finished.

Rerunning ``tlx.train`` with the same workdir resumes it. Before anything is written the new
config is compared with the run's own: a change that would make the resumed run a different
experiment (model, data, labels, plan, optimizer, seed, ...) is refused with the differing keys
listed; a change that only alters how the run is watched, executed or how long it goes on
(evaluation and checkpoint cadence, devices and parallel mode, micro-batches, feature cache,
total_steps extended) is allowed and recorded in history.jsonl, next to the original config.json.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from pathlib import Path

from tlx.errors import ResumeMismatchError
from tlx.spec import as_plain, dotted_leaves, with_defaults

CONFIG = "config.json"
HISTORY = "history.jsonl"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
DAMAGED_CHECKPOINTS = "checkpoints_damaged"
BEST_CHECKPOINTS = "checkpoints_best"  # the selected step's weights (config.selection)
AUDIT = "audit"
TENSORBOARD = "tensorboard"

# Keys a resume may change. They decide when things are logged, evaluated and saved, or how the
# same steps are executed (devices, micro-batches, cached features, compiled chunks; each tested
# to train alike), not what is computed: a run may resume on another machine or in another mode.
RESUMABLE_KEYS = frozenset(
    {
        "eval_every",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "steps_per_call",
        "xla_flags",
        "parallel",
        "sharding.model_axis",
        "sharding.rules",
        "grad_accum_steps",
        "feature_cache",
        "data.workers",
        "data.eval_batch_size",
        # Where the data is, not what it is (a moved dataset folder): the split and the subset
        # are fixed by data.name, data.train_examples and the seed.
        "data.data_dir",
    }
)


def config_changes(old: Mapping, new: Mapping) -> dict[str, tuple]:
    """{dotted key: (old value, new value)} for every leaf that differs (absent: None). A field
    one config leaves out counts as its default (tlx.spec.with_defaults)."""
    old, new = dotted_leaves(with_defaults(old)), dotted_leaves(with_defaults(new))
    return {
        k: (old.get(k), new.get(k))
        for k in sorted(old.keys() | new.keys())
        if old.get(k) != new.get(k)
    }


def refused_changes(changes: Mapping[str, tuple]) -> dict[str, tuple]:
    """The changes a resume may not make (see the module docstring)."""
    return {
        key: (old, new)
        for key, (old, new) in changes.items()
        if key not in RESUMABLE_KEYS and not _extends_total_steps(key, old, new)
    }


def check_resume(workdir: str | Path, config: Mapping) -> dict[str, tuple] | None:
    """None for a new run; else the (allowed) changes from the run's own config.

    Raises ResumeMismatchError, having written nothing, when a change is refused.
    """
    path = Path(workdir) / CONFIG
    if not path.exists():
        return None
    try:
        original = json.loads(path.read_text())
    except ValueError as e:
        raise ResumeMismatchError(
            f"{path} is not valid JSON ({e}), so this run cannot be resumed safely. Use a new "
            "--workdir."
        ) from e
    changes = config_changes(original, config)
    refused = refused_changes(changes)
    if refused:
        lines = [f"  {key}: {old!r} -> {new!r}" for key, (old, new) in list(refused.items())[:12]]
        if len(refused) > 12:
            lines.append(f"  ... and {len(refused) - 12} more")
        raise ResumeMismatchError(
            f"{workdir} holds a run with a different config, and resuming it with this one would "
            "mix two experiments. Differences:\n"
            + "\n".join(lines)
            + f"\nNothing was written. Either train in a new --workdir, or start a new run from "
            f"this one's weights with --config.init_from={workdir}. (A resume may change only "
            f"{', '.join(sorted(RESUMABLE_KEYS))}, and extend total_steps.)"
        )
    return changes


def record_start(workdir: str | Path, config: Mapping, changes, from_step: int) -> None:
    """Write config.json for a new run; for a resume, append what changed to history.jsonl."""
    workdir = Path(workdir)
    if changes is None:
        write_atomic(workdir / CONFIG, json.dumps(as_plain(config), indent=1))
        event = {"event": "start"}
    else:
        event = {
            "event": "resume",
            "from_step": from_step,
            "changed": {k: {"from": old, "to": new} for k, (old, new) in changes.items()},
        }
    event["time"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with open(workdir / HISTORY, "a") as f:
        f.write(json.dumps(event) + "\n")


def _extends_total_steps(key: str, old, new) -> bool:
    return key == "total_steps" and isinstance(old, int) and isinstance(new, int) and new >= old


def write_atomic(path: Path, text: str) -> None:
    """`text` written beside `path`, then renamed into place: no reader sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_config(workdir: str | Path, *, original: bool = False) -> dict:
    """The run's config: config.json with the changes recorded by later resumes applied (e.g. an
    extended total_steps); ``original=True`` gives config.json as written at the start.

    Raises FileNotFoundError naming what --workdir must be when there is no run there.
    """
    path = Path(workdir) / CONFIG
    if not path.is_file():
        found = "does not exist" if not Path(workdir).exists() else f"has no {CONFIG}"
        raise FileNotFoundError(
            f"{workdir} {found}: expected a run folder written by tlx.train ({CONFIG}, "
            f"{CHECKPOINTS}/). Check the path."
        )
    config = json.loads(path.read_text())
    if original:
        return config
    for event in read_history(workdir):
        for key, change in event.get("changed", {}).items():
            _set_dotted(config, key, change["to"])
    return config


def read_history(workdir: str | Path) -> list[dict]:
    return _read_jsonl(Path(workdir) / HISTORY)


def read_metrics(workdir: str | Path) -> list[dict]:
    """Every record of metrics.jsonl ({"step", "split", metric: value}), in order written."""
    return _read_jsonl(Path(workdir) / METRICS)


def read_summary(workdir: str | Path) -> dict | None:
    """summary.json, or None before the run has reached its end."""
    path = Path(workdir) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else None


def is_finished(workdir: str | Path, total_steps: int | None = None) -> bool:
    """The run reached its last step: `total_steps` (a sweep's cell), by default that of its
    config as it now stands (a run extended by a resume is unfinished until the new end)."""
    summary = read_summary(workdir)
    if summary is None:
        return False
    if total_steps is None:
        if not (Path(workdir) / CONFIG).is_file():
            return False
        total_steps = read_config(workdir)["total_steps"]
    return int(summary.get("steps", -1)) == int(total_steps)


def selected_checkpoints(workdir: str | Path, step: int | None = None) -> Path:
    """The checkpoint folder that holds the run's selected weights: checkpoints_best/ when the run
    selects on validation (config.selection) and has saved a best step, else checkpoints/ (its
    last step is then the selected one). With `step`, the folder that holds that step."""
    best, regular = Path(workdir) / BEST_CHECKPOINTS, Path(workdir) / CHECKPOINTS
    best_steps = _steps(best)
    if step is None:
        return best if best_steps else regular
    return best if step in best_steps and step not in _steps(regular) else regular


def _steps(folder: Path) -> list[int]:
    return (
        sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []
    )


def latest_step(workdir: str | Path) -> int | None:
    """The newest checkpoint's step (None: none yet), from the step folders' names (orbax names
    a step's folder by its number once it is complete). Not verified: restoring verifies."""
    return max(_steps(Path(workdir) / CHECKPOINTS), default=None)


def _read_jsonl(path: Path) -> list[dict]:
    """One record per line; a missing file is empty, and a last line cut short by a killed run
    is skipped (it is rewritten when the run resumes)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _set_dotted(tree: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    if value is None:
        tree.pop(leaf, None)
    else:
        tree[leaf] = value
