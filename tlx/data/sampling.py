"""What the text and image pipelines share: argument checks and the epoch-shuffle seed."""

from __future__ import annotations

import numpy as np


def check_sizes(source, batch_size: int) -> None:
    if batch_size < 1 or len(source) == 0:
        raise ValueError(
            f"Need batch_size >= 1 and a non-empty source; got {batch_size}, {source!r}."
        )


def shuffle_seed(seed: int) -> int:
    """grain reshuffles epoch e with seed + e, so seeds s and s + 1 would share all but one epoch
    order, offset by one epoch. Hashing the seed first makes different seeds unrelated."""
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])
