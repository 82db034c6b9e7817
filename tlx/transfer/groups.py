"""Parameter groups: a model's parameters partitioned into ordered, named groups.

A model declares its groups as an ordered list of ``(name, regex)`` from input to output
(e.g. BERT: embeddings, layer_0 … layer_{L-1}, pooler, head). Every parameter must belong to
exactly one group; :func:`assign_groups` checks that and reports every problem at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

GroupSpec = Sequence[tuple[str, str]]


class GroupError(ValueError):
    """Parameters that match no group or several groups, or groups that match nothing."""


def assign_groups(param_paths: Sequence[str], groups: GroupSpec) -> dict[str, str]:
    """Map each '/'-joined parameter path to the name of the one group whose regex matches it."""
    names = [name for name, _ in groups]
    if len(set(names)) != len(names):
        raise GroupError(f"Group names must be unique, found {names}.")
    compiled = [(name, re.compile(pattern)) for name, pattern in groups]
    assignment: dict[str, str] = {}
    problems: list[str] = []
    for path in param_paths:
        hits = [name for name, rx in compiled if rx.search(path)]
        if len(hits) == 1:
            assignment[path] = hits[0]
        elif not hits:
            problems.append(f"  {path}: matches no group")
        else:
            problems.append(f"  {path}: matches several groups {hits}")
    empty = [name for name in names if name not in set(assignment.values())]
    problems += [
        f"  group {name!r} ({dict(groups)[name]!r}) matches no parameter" for name in empty
    ]
    if problems:
        raise GroupError(
            "Every parameter must belong to exactly one group and every group must match one:\n"
            + "\n".join(problems)
            + f"\nDeclared groups (input -> output): {names}. Fix the model's group regexes."
        )
    return assignment
