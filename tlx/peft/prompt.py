"""Prompt tuning (Lester et al. 2021): `peft.prompt_tokens` learned vectors the frozen encoder
attends to, with the model's code unchanged.

tlx's BERT gets a parameter `bert/embeddings/prompt` [n, hidden]. Through flax's method
interception, the embeddings' output gets the n vectors inserted after [CLS] (in the space the
embeddings' LayerNorm outputs, so they start as N(0, 1) like its outputs; no position embedding
of their own), the attention mask gets n ones there, and the encoder's outputs lose those n
positions again, so [CLS], the pooler and mean pooling read the original tokens, which have
attended to the prompt in every layer. The prompt and the head train (tlx.peft.labels).
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from tlx.errors import ConfigError
from tlx.models.bert import BertEmbeddings, BertModel
from tlx.tree import flatten, unflatten

ADDED_PATTERN = r"/embeddings/prompt$"
WORD_EMBEDDINGS = "/embeddings/word_embeddings/embedding"


def find_embeddings(param_shapes: Mapping[str, tuple]) -> tuple[str, int]:
    """(the BERT embeddings' module path, the hidden width); refuses a model without them."""
    found = [(p.removesuffix(WORD_EMBEDDINGS) + "/embeddings", s[-1])
             for p, s in param_shapes.items() if p.endswith(WORD_EMBEDDINGS)]  # fmt: skip
    if len(found) != 1:
        raise ConfigError(
            "peft.method='prompt' prepends learned vectors to a BERT encoder's input and needs "
            f"one BERT embeddings module (a '...{WORD_EMBEDDINGS}' parameter); this model has "
            f"{len(found)}. Use lora, bitfit or adapters for other models."
        )
    return found[0]


def init_prompt(rng, module: str, hidden: int, tokens: int) -> dict[str, jax.Array]:
    return {f"{module}/prompt": jax.random.normal(rng, (tokens, hidden), jnp.float32)}


def _after_cls(x, inserted):
    """x [B, L, ...] with `inserted` [B, n, ...] placed after position 0."""
    return jnp.concatenate([x[:, :1], inserted, x[:, 1:]], axis=1)


def prompt_forward(forward, module: str, tokens: int):
    """`forward` with the prompt inserted after [CLS] and dropped from the encoder's outputs."""
    model_path = tuple(module.split("/")[:-1])  # the BertModel holding the embeddings

    def wrapped(params, model_state, batch, rng, train):
        flat = flatten(params)
        prompt = flat.pop(f"{module}/prompt")

        def intercept(next_fun, args, kwargs, context):
            target = context.module
            if context.method_name != "__call__":
                return next_fun(*args, **kwargs)
            if isinstance(target, BertEmbeddings) and "/".join(target.path) == module:
                x = next_fun(*args, **kwargs)
                return _after_cls(
                    x, jnp.broadcast_to(prompt.astype(x.dtype), (x.shape[0], *prompt.shape))
                )
            if isinstance(target, BertModel) and tuple(target.path) == model_path:
                return _call_model(next_fun, args, kwargs, tokens)
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(intercept):
            return forward(unflatten(flat), model_state, batch, rng, train)

    return wrapped


def _call_model(next_fun, args, kwargs, tokens: int):
    """BertModel's call with n ones in the attention mask after [CLS], its hidden states cut
    back to the input's positions."""
    args = list(args)
    mask = args[1] if len(args) > 1 else kwargs.get("attention_mask")
    if mask is None:
        mask = jnp.ones(args[0].shape, jnp.int32)
    longer = _after_cls(mask, jnp.ones((mask.shape[0], tokens), mask.dtype))
    if len(args) > 1:
        args[1] = longer
    else:
        kwargs = {**kwargs, "attention_mask": longer}
    outputs = next_fun(*args, **kwargs)
    keep = lambda h: jnp.concatenate([h[:, :1], h[:, 1 + tokens :]], axis=1)
    hidden, pooled, *rest = outputs
    if rest:  # output_hidden_states
        rest = [tuple(keep(h) for h in rest[0])]
    return (keep(hidden), pooled, *rest)
