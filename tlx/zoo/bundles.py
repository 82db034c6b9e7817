"""A model bundle: what the rest of tlx needs to know about a model, built by tlx.zoo.registry.

A bundle is everything the rest of tlx needs to know about a model: the linen module, its ordered
parameter groups, a uniform ``forward`` over batches, pretrained weights to merge into the init, and
the preprocessing (a tokenizer for text models, an ImagePreprocessing for image models).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import numpy as np

from tlx.spec import COMPUTE_DTYPES, ModelSpec
from tlx.types import ForwardFn


@dataclasses.dataclass
class ModelBundle:
    module: nn.Module
    groups: Sequence[tuple[str, str]]  # ordered (name, regex), input -> output
    forward: ForwardFn
    init: Callable[[Any], dict]  # rng -> fresh variables {"params": ..., maybe "batch_stats"}
    pretrained: Mapping[str, np.ndarray] | None = None  # flat '/'-paths -> arrays
    allow_fresh: Sequence[str] = ()  # regexes of params the checkpoint may lack (new heads)
    # Other pretrained collections, e.g. {"batch_stats": flat}; merged like the params.
    pretrained_state: Mapping[str, Mapping[str, np.ndarray]] = dataclasses.field(
        default_factory=dict
    )
    # trainable group names -> the forward of a stage that trains them (image models: BatchNorm
    # in frozen groups follows its own policy); None: `forward` serves every stage.
    forward_for_stage: Callable[[Sequence[str]], ForwardFn] | None = None
    tokenizer: Any = None  # text models: a Hugging Face fast tokenizer
    preprocessing: Any = None  # image models: a tlx.data.preprocess.ImagePreprocessing
    checkpoint_dir: str | None = None
    description: str = ""
    # Top-level parameter collections added to the model for a run (DANN's domain classifier):
    # fresh at the start, also when `init_from` names a run that never had them.
    added_params: tuple[str, ...] = ()

    @property
    def group_names(self) -> list[str]:
        return [name for name, _ in self.groups]


def compute_dtype(model: ModelSpec | Mapping):
    """`model.compute_dtype`: the dtype of activations and matmuls. Parameters, optimizer state
    and the loss stay float32 (mixed precision with float32 master weights)."""
    name = ModelSpec.of(model).compute_dtype
    if name not in COMPUTE_DTYPES:
        raise ValueError(
            f"model.compute_dtype={name!r} is not one of {COMPUTE_DTYPES}; bfloat16 is the "
            "mixed-precision choice (float32 parameters, bfloat16 compute)."
        )
    import jax.numpy as jnp

    return jnp.dtype(name)


def sown(intermediates, endpoint: str):
    """The activations a module sowed under `endpoint` (the last value sown, at any depth)."""
    found, names = [], set()

    def walk(tree):
        for key, value in tree.items():
            if isinstance(value, tuple):  # sow keeps a tuple of every value sown under a name
                names.add(key)
                if key == endpoint:
                    found.append(value[-1])
            elif hasattr(value, "items"):
                walk(value)

    walk(intermediates)
    if not found:
        raise ValueError(f"the model sows no endpoint {endpoint!r}; it sows {sorted(names)}.")
    return found[-1]
