"""Nested variable trees as flat '/'-joined paths: the one place tlx flattens and unflattens."""

from __future__ import annotations

from collections.abc import Mapping

from flax import traverse_util


def flatten(tree: Mapping) -> dict[str, object]:
    """Nested param dict -> {'a/b/kernel': leaf}."""
    return traverse_util.flatten_dict(dict(tree), sep="/")


def unflatten(flat: Mapping[str, object]) -> dict:
    """{'a/b/kernel': leaf} -> the nested dict."""
    return traverse_util.unflatten_dict(dict(flat), sep="/")


def leaf_paths(tree: Mapping) -> list[str]:
    """The '/'-joined paths of a tree's leaves, in flattening order."""
    return list(flatten(tree))
