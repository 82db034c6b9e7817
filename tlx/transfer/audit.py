"""The freeze audit: what each group does in a stage, printed at the stage start and saved.

Answers the most common fine-tuning complaint ("my freeze silently did nothing") by showing, per
group, its parameter count, whether it trains, its learning-rate multiplier and the bytes of
optimizer state it holds (zero for frozen groups).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tlx import run_folder
from tlx.transfer.optim import group_states, state_bytes
from tlx.transfer.plans import FROZEN, Stage


@dataclasses.dataclass(frozen=True)
class GroupAudit:
    group: str
    params: int
    trainable: bool
    lr_multiplier: float | None
    optimizer_state_bytes: int


def audit_stage(
    stage: Stage, group_of: Mapping[str, str], flat_params: Mapping, opt_state
) -> list[GroupAudit]:
    counts: dict[str, int] = {g: 0 for g in stage.multipliers}
    for path, group in group_of.items():
        counts[group] += int(np.prod(np.shape(flat_params[path])))
    slots = group_states(opt_state)
    rows = []
    for group, multiplier in stage.multipliers.items():
        rows.append(
            GroupAudit(
                group=group,
                params=counts[group],
                trainable=multiplier is not FROZEN,
                lr_multiplier=multiplier,
                optimizer_state_bytes=state_bytes(slots[group]),
            )
        )
    frozen_with_state = [r.group for r in rows if not r.trainable and r.optimizer_state_bytes]
    if frozen_with_state:  # would mean set_to_zero was not used: a bug, not a user error
        raise AssertionError(f"frozen groups hold optimizer state: {frozen_with_state}")
    return rows


def format_audit(rows: list[GroupAudit], stage_index: int, start_step: int) -> str:
    total = sum(r.params for r in rows)
    trainable = sum(r.params for r in rows if r.trainable)
    lines = [
        f"Freeze audit, stage {stage_index} (from step {start_step}): "
        f"{trainable:,} of {total:,} parameters train ({100 * trainable / max(total, 1):.3g}%)",
        f"  {'group':<16}{'params':>12}  {'state':<9}{'lr mult':>9}{'opt state':>12}",
    ]
    for r in rows:
        mult = "-" if r.lr_multiplier is None else f"{r.lr_multiplier:.3g}"
        lines.append(
            f"  {r.group:<16}{r.params:>12,}  {'train' if r.trainable else 'FROZEN':<9}"
            f"{mult:>9}{_bytes(r.optimizer_state_bytes):>12}"
        )
    return "\n".join(lines)


def _audit_path(workdir: Path, stage_index: int) -> Path:
    return Path(workdir) / run_folder.AUDIT / f"stage_{stage_index}.json"


def save_audit(workdir: Path, rows: list[GroupAudit], stage_index: int, start_step: int) -> None:
    path = _audit_path(workdir, stage_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"stage": stage_index, "start_step": start_step}
    payload["groups"] = [dataclasses.asdict(r) for r in rows]
    path.write_text(json.dumps(payload, indent=1))


def record_step_memory(workdir: Path, stage_index: int, step_memory_bytes: int) -> None:
    """Add the stage's compiled training step's memory need (tlx.flops.step_memory_bytes, known
    only once the step has run) to the audit its start saved; written whole, then renamed."""
    path = _audit_path(workdir, stage_index)
    if not path.exists():  # not the lead process, or a stage that saved no audit
        return
    payload = json.loads(path.read_text())
    payload["step_memory_bytes"] = int(step_memory_bytes)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(payload, indent=1))
    partial.replace(path)


def trained_extent(workdir: Path) -> dict[str, int] | None:
    """The most any stage of the run trained, from its saved audits (every stage started, in this
    process or one it resumed): {"trainable_params", "optimizer_state_bytes", "params"} (the last
    is the model's whole count, added parameters such as LoRA factors included), and
    "step_memory_bytes" where the stages' compiled steps were measured; None without audits. A
    parameter-efficient study's cost columns (issue 25)."""
    audits = [
        json.loads(p.read_text())
        for p in sorted((Path(workdir) / run_folder.AUDIT).glob("stage_*.json"))
    ]
    if not audits:
        return None
    stages = [a["groups"] for a in audits]
    extent = {
        "trainable_params": max(sum(g["params"] for g in s if g["trainable"]) for s in stages),
        "optimizer_state_bytes": max(sum(g["optimizer_state_bytes"] for g in s) for s in stages),
        "params": max(sum(g["params"] for g in s) for s in stages),
    }
    measured = [a["step_memory_bytes"] for a in audits if a.get("step_memory_bytes")]
    if measured:
        extent["step_memory_bytes"] = max(measured)
    return extent


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
