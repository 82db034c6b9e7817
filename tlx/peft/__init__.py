"""Parameter-efficient transfer (issue 25): LoRA, BitFit, bottleneck adapters and prompt tuning
as plan choices.

`apply_peft(bundle, spec)` gives the model what the method adds (LoRA's factors and their
forward); `tlx.peft.labels.with_peft_labels` keeps the rest of each trained group frozen.
"""

from __future__ import annotations

import dataclasses

import jax

from tlx.errors import ConfigError
from tlx.peft.adapters import ADDED_PATTERN, adapter_forward, find_adapter_targets, init_adapters
from tlx.peft.lora import (
    FACTOR_PATTERN,
    INITS,
    find_targets,
    init_factors,
    lora_forward,
    merge_lora,
)
from tlx.peft.prompt import ADDED_PATTERN as PROMPT_PATTERN
from tlx.peft.prompt import find_embeddings, init_prompt, prompt_forward
from tlx.spec import PEFT_METHODS, PeftSpec
from tlx.tree import flatten, unflatten

__all__ = ["apply_peft", "check_peft", "merge_lora"]


def check_peft(spec: PeftSpec) -> None:
    """The section's values, before any model is built."""
    if spec.method not in PEFT_METHODS:
        raise ConfigError(f"peft.method={spec.method!r}; choose one of {list(PEFT_METHODS)}.")
    if spec.method == "adapters" and not (
        isinstance(spec.bottleneck, int) and spec.bottleneck >= 1
    ):
        raise ConfigError(f"peft.bottleneck={spec.bottleneck!r} must be an integer >= 1, e.g. 64.")
    if spec.method == "prompt" and not (
        isinstance(spec.prompt_tokens, int) and spec.prompt_tokens >= 1
    ):
        raise ConfigError(
            f"peft.prompt_tokens={spec.prompt_tokens!r} must be an integer >= 1, e.g. 20."
        )
    if spec.method != "lora":
        return
    if not spec.targets:
        raise ConfigError(
            "peft.method='lora' needs peft.targets, a regex searched in kernel paths, e.g. "
            "'attention/self/(query|value)/kernel' (BERT) or 'features' (a CNN)."
        )
    if not (isinstance(spec.rank, int) and spec.rank >= 1):
        raise ConfigError(f"peft.rank={spec.rank!r} must be an integer >= 1, e.g. 8.")
    if spec.init not in INITS:
        raise ConfigError(f"peft.init={spec.init!r}; choose one of {list(INITS)}.")
    if not spec.alpha > 0:
        raise ConfigError(f"peft.alpha={spec.alpha!r} must be > 0, e.g. 16 (scale alpha/rank).")
    if not 0 <= spec.dropout < 1:
        raise ConfigError(f"peft.dropout={spec.dropout!r} must be in [0, 1), e.g. 0.05.")


def apply_peft(bundle, spec: PeftSpec, param_shapes: dict):
    """The bundle with what the method adds: LoRA's factors or the adapters (init, forward);
    BitFit adds nothing. `param_shapes`: the model's flat parameter shapes (from jax.eval_shape
    of its init)."""
    check_peft(spec)
    if spec.method == "lora":
        targets = find_targets(param_shapes, spec.targets, spec.rank)
        added = lambda rng: init_factors(rng, targets, spec.rank, spec.init)
        wrap = lambda forward: lora_forward(forward, spec.scale, spec.dropout, targets)
        pattern, what = FACTOR_PATTERN, f"LoRA r={spec.rank} on {len(targets)} kernels"
    elif spec.method == "adapters":
        widths = find_adapter_targets(param_shapes, spec.targets)
        added = lambda rng: init_adapters(rng, widths, spec.bottleneck)
        wrap = lambda forward: adapter_forward(forward, widths)
        pattern, what = ADDED_PATTERN, f"adapters m={spec.bottleneck} after {len(widths)} layers"
    elif spec.method == "prompt":
        module, hidden = find_embeddings(param_shapes)
        added = lambda rng: init_prompt(rng, module, hidden, spec.prompt_tokens)
        wrap = lambda forward: prompt_forward(forward, module, spec.prompt_tokens)
        pattern, what = PROMPT_PATTERN, f"a {spec.prompt_tokens}-vector prompt"
    else:
        return bundle

    def init(rng):
        variables = bundle.init(rng)
        params = {**flatten(variables["params"]), **added(jax.random.fold_in(rng, 7))}
        return {**variables, "params": unflatten(params)}

    stage_forward = bundle.forward_for_stage
    return dataclasses.replace(
        bundle,
        init=init,
        forward=wrap(bundle.forward),
        forward_for_stage=None
        if stage_forward is None
        else (lambda *args, **kwargs: wrap(stage_forward(*args, **kwargs))),
        allow_fresh=(*bundle.allow_fresh, pattern),
        description=f"{bundle.description}; {what}",
    )
