"""The benchmark's models: speed_vs_torch's CNNs and random-init BERTs, in tlx and in PyTorch
(frozen as the plan says)."""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING

from experiments import speed_vs_torch as svt

if TYPE_CHECKING:
    from experiments.bench.config import BenchConfig, Cell


VOCAB_SIZE = 30522  # bert-base-uncased's (and MiniLM's) vocabulary
BERT_SIZES = {  # layers, hidden, heads, intermediate
    "bert_mini": (6, 384, 12, 1536),  # MiniLM-L6-sized, random init
    "bert_base": (12, 768, 12, 3072),
}
# Attention variants of BERT-base (issue 24): name -> (size, tlx attn_implementation, attention
# dropout). Hugging Face's default is "eager" semantics with 0.1 dropout on the attention
# probabilities; jax.nn.dot_product_attention (cuDNN's fused kernel on a GPU in bfloat16) has
# none, so "_fused" trains without it, and "_nodrop" is the eager path without it too: the pair
# separates what dropping the dropout saves from what the fused kernel saves. PyTorch runs each
# with SDPA and the same dropout.
BERT_VARIANTS = {
    **{name: (name, "eager", 0.1) for name in BERT_SIZES},
    "bert_base_fused": ("bert_base", "fused", 0.0),
    "bert_base_nodrop": ("bert_base", "eager", 0.0),
}
# tlx group -> the module prefix of transformers' BertForSequenceClassification.
BERT_TORCH_PREFIXES = {
    "embeddings": "bert.embeddings.",
    "pooler": "bert.pooler.",
    "head": "classifier.",
}


def is_text(model: str) -> bool:
    return model in BERT_VARIANTS


def known_models() -> list[str]:
    return [*svt.MODELS, *BERT_VARIANTS]


def bert_shape(model: str) -> tuple[int, int, int, int]:
    """(layers, hidden, heads, intermediate) of a BERT model or variant."""
    return BERT_SIZES[BERT_VARIANTS[model][0]]


def bert_sizes(model: str) -> dict[str, int]:
    """The fields of a BertConfig for `model` (the same names in tlx and in transformers): its
    sizes and its attention dropout."""
    layers, hidden, heads, intermediate = bert_shape(model)
    return {
        "attention_probs_dropout_prob": BERT_VARIANTS[model][2],
        "vocab_size": VOCAB_SIZE,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
    }


def bert_bundle(model: str, dtype):
    """A random-init BERT classifier (2 labels) as a ModelBundle, like tlx.zoo.text builds one
    from a checkpoint."""
    from tlx.models.bert import BertConfig, BertForSequenceClassification, bert_param_groups
    from tlx.zoo.bundles import ModelBundle
    from tlx.zoo.text import bert_forward_and_init

    config = BertConfig(**bert_sizes(model), attn_implementation=BERT_VARIANTS[model][1])
    module = BertForSequenceClassification(config, num_labels=2, dtype=dtype)
    forward, init = bert_forward_and_init(module)
    return ModelBundle(module, bert_param_groups(bert_shape(model)[0]), forward, init)


def tlx_bundle(model: str, precision: str, cfg: BenchConfig):
    return _bundle(model, precision, cfg.image_size)


def _bundle(model: str, precision: str, image_size: int):
    import jax.numpy as jnp

    dtype = jnp.dtype(precision)
    if is_text(model):
        return bert_bundle(model, dtype)
    return svt.image_bundle(model, image_size, dtype=dtype)


@functools.lru_cache(maxsize=8)
def _host_variables(model: str, precision: str, image_size: int):
    import jax

    bundle = _bundle(model, precision, image_size)
    return jax.device_get(jax.jit(bundle.init)(jax.random.key(0)))


def initial_variables(model: str, precision: str, cfg: BenchConfig):
    """The model's random initial weights, made once per (model, precision, image size) and kept
    on the host: initialising is a compiled program of its own (40 s for ResNet-50 on the 2-core
    CPU), which every cell of the model would otherwise pay again."""
    return _host_variables(model, precision, 0 if is_text(model) else cfg.image_size)


def torch_bert_group(name: str) -> str:
    """transformers parameter name -> tlx group name."""
    if name.startswith("bert.encoder.layer."):
        return f"layer_{name.split('.')[3]}"
    for group, prefix in BERT_TORCH_PREFIXES.items():
        if name.startswith(prefix):
            return group
    raise KeyError(f"no tlx group for transformers parameter {name!r}")


@functools.lru_cache(maxsize=4)
def _pristine_torch(model: str):
    """A randomly initialised torch model, built once per model name (transformers' and
    torchvision's initialisers take 15 s on the 2-core CPU) and copied for each cell."""
    if is_text(model):
        import transformers

        # PyTorch's fused attention (scaled_dot_product_attention), as the baseline; given
        # in the config: transformers 5 no longer takes it as a model constructor argument.
        config = transformers.BertConfig(
            **bert_sizes(model), num_labels=2, attn_implementation="sdpa"
        )
        return transformers.BertForSequenceClassification(config)
    import torchvision

    return getattr(torchvision.models, svt.MODELS[model][2])(weights=None, num_classes=10)


def fresh_torch(model: str):
    return copy.deepcopy(_pristine_torch(model))


def torch_bert(model: str, plan: str):
    """(transformers BertForSequenceClassification, random init, its Adam) frozen as tlx's plan."""
    from tlx.models.bert import bert_param_groups

    net = fresh_torch(model)
    groups = bert_param_groups(bert_shape(model)[0])
    train = set(svt.trainable_groups([g for g, _ in groups], plan))
    group_of = {name: torch_bert_group(name) for name, _ in net.named_parameters()}
    return net, svt.freeze_like_tlx(net, group_of, train)


def torch_model(cell: Cell):
    """(model, Adam, batch -> logits) in PyTorch for the cell's model, frozen as its plan says."""
    if is_text(cell.model):
        net, opt = torch_bert(cell.model, cell.plan)

        def logits_of(batch):
            ids, mask, types = (batch[k] for k in ("input_ids", "attention_mask", "token_type_ids"))
            return net(input_ids=ids, attention_mask=mask, token_type_ids=types).logits

    else:
        net, opt = svt.torchvision_model(cell.model, cell.plan, fresh_torch(cell.model))

        def logits_of(batch):
            return net(batch["image"])

    return net, opt, logits_of
