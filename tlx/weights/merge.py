"""Merge converted pretrained parameters into a fresh init, reporting every key that misfits."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from flax import traverse_util


@dataclasses.dataclass
class MergeReport:
    loaded: list[str] = dataclasses.field(default_factory=list)
    # Not in the checkpoint, kept as initialised (e.g. a new head).
    fresh: list[str] = dataclasses.field(default_factory=list)
    # In the checkpoint, not in the model.
    unexpected: list[str] = dataclasses.field(default_factory=list)
    # (path, checkpoint shape, model shape)
    mis_shaped: list[tuple[str, tuple, tuple]] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} parameter arrays from the checkpoint"]
        if self.fresh:
            lines.append(f"initialised fresh (not in the checkpoint): {', '.join(self.fresh)}")
        else:
            lines.append("initialised fresh: none")
        if self.unexpected:
            lines.append(f"unexpected (in the checkpoint only): {', '.join(self.unexpected)}")
        for path, got, want in self.mis_shaped:
            lines.append(f"mis-shaped {path}: checkpoint {got}, model {want}")
        return "\n".join(lines)


class MergeError(ValueError):
    def __init__(self, message: str, report: MergeReport):
        super().__init__(message)
        self.report = report


def merge_pretrained(
    init_params: dict,
    pretrained_flat: dict[str, np.ndarray],
    *,
    allow_fresh: Sequence[str] = (),
) -> tuple[dict, MergeReport]:
    """Replace init params by pretrained ones of the same "/"-path; dtype follows the init.

    Params missing from the checkpoint stay as initialised only if a regex in `allow_fresh` matches
    them (e.g. r"^classifier/" for a new head); anything else that does not fit raises one
    MergeError listing every unexpected, mis-shaped and missing key.

    `init_params` may be abstract (`jax.eval_shape(model.init, ...)`, no compile, no memory) when
    the checkpoint covers every parameter: only shapes and dtypes are read from it then.
    """
    init_flat = traverse_util.flatten_dict(init_params, sep="/")
    report = MergeReport()
    merged = {}
    for path, init_value in init_flat.items():
        if path not in pretrained_flat:
            report.fresh.append(path)
            merged[path] = init_value
            continue
        value = pretrained_flat[path]
        if tuple(value.shape) != tuple(init_value.shape):
            report.mis_shaped.append((path, tuple(value.shape), tuple(init_value.shape)))
            merged[path] = init_value
            continue
        report.loaded.append(path)
        merged[path] = jnp.asarray(np.asarray(value), dtype=init_value.dtype)
    report.unexpected = sorted(set(pretrained_flat) - set(init_flat))
    not_allowed = [p for p in report.fresh if not any(re.search(r, p) for r in allow_fresh)]
    # A fresh param needs a real initial value, not a jax.eval_shape placeholder.
    abstract = [p for p in report.fresh if not hasattr(init_flat[p], "__array__")]

    if report.unexpected or report.mis_shaped or not_allowed or abstract:
        problems = [f"unexpected checkpoint key {p!r}" for p in report.unexpected]
        problems += [
            f"mis-shaped {p!r}: checkpoint {got}, model {want}"
            for p, got, want in report.mis_shaped
        ]
        problems += [f"missing from the checkpoint {p!r} (not in allow_fresh)" for p in not_allowed]
        problems += [
            f"fresh {p!r} has no initial value (abstract init): pass model.init(...) params"
            for p in abstract
        ]
        hint = "" if report.loaded else _no_match_hint(init_flat, pretrained_flat)
        raise MergeError(
            f"pretrained parameters do not fit the model ({len(problems)} problem(s)):\n  "
            + "\n  ".join(problems)
            + hint,
            report,
        )
    return traverse_util.unflatten_dict(merged, sep="/"), report


def _no_match_hint(init_flat: dict, pretrained_flat: dict) -> str:
    """Nothing matched: usually a prefix differs (e.g. "bert/" on a bare BertModel's params)."""
    for key in pretrained_flat:
        head, _, rest = key.partition("/")
        if rest in init_flat:
            return (
                f"\nno key matched at all, but checkpoint paths carry a {head + '/'!r} prefix the "
                f"model lacks: merge into {{{head!r}: params}} and take [{head!r}] of the result"
            )
    some_init = next(iter(init_flat), "")
    some_ckpt = min(pretrained_flat, default="")
    return (
        f"\nno key matched at all: model paths look like {some_init!r}, checkpoint paths like "
        f"{some_ckpt!r} (pass the params collection, not the whole variables dict?)"
    )
