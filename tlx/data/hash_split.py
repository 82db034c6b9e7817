"""Deterministic splits by hashing: the same examples land in the same split on every machine.

Two rules, for two kinds of data:
- `rank_split` (fixed datasets such as Fashion-MNIST or tf_flowers): rank the examples by the sha1
  of a content key and cut the ranking into exact sizes. Exact sizes match the published split
  sizes; a content key (not the record position) makes the split independent of record order,
  which differs between copies of a dataset (tfds shuffles records when it writes them), and
  keeps exact duplicates together.
- `fraction_split` (folders that grow): each file's split depends only on the sha1 of its own
  relative path, so adding or removing files never moves another file to another split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def digest(key: bytes | str) -> bytes:
    return hashlib.sha1(key.encode("utf-8") if isinstance(key, str) else key).digest()


def rank_split(
    keys: Iterable[bytes], sizes: Sequence[tuple[str, int]], rest: str
) -> dict[str, np.ndarray]:
    """Split name -> sorted example indices: the first sizes[0][1] examples by sha1(key) go to
    sizes[0][0], the next sizes[1][1] to sizes[1][0], ..., all others to `rest`.

    Ties (identical keys) are broken by index; identical keys are identical content, so which copy
    lands where does not change what a split contains.
    """
    digests = [digest(k) for k in keys]
    if sum(n for _, n in sizes) > len(digests) or any(n < 0 for _, n in sizes):
        raise ValueError(f"Cannot cut {sizes} out of {len(digests)} examples.")
    order = np.array(sorted(range(len(digests)), key=lambda i: (digests[i], i)), np.int64)
    splits, start = {}, 0
    for name, size in sizes:
        splits[name] = np.sort(order[start : start + size])
        start += size
    splits[rest] = np.sort(order[start:])
    return splits


def fraction_split(key: str, fractions: Mapping[str, float]) -> str:
    """The split of one key: sha1(key) as a number in [0, 1), placed on the cumulative fractions.

    `fractions` maps split names to fractions summing to 1, in order (e.g. train 0.8, validation
    0.1, test 0.1).
    """
    u = int.from_bytes(digest(key)[:8], "big") / 2**64
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        if u < cumulative:
            return name
    return next(reversed(list(fractions)))  # u above a sum that rounds to just below 1
