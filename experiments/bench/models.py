"""The benchmark's models: speed_vs_torch's CNNs and random-init BERTs, in tlx and in PyTorch
(frozen as the plan says)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments import speed_vs_torch as svt

if TYPE_CHECKING:
    from experiments.bench.config import BenchConfig, Cell


VOCAB_SIZE = 30522  # bert-base-uncased's (and MiniLM's) vocabulary
BERT_SIZES = {  # layers, hidden, heads, intermediate
    "bert_mini": (6, 384, 12, 1536),  # MiniLM-L6-sized, random init
    "bert_base": (12, 768, 12, 3072),
}
# tlx group -> the module prefix of transformers' BertForSequenceClassification.
BERT_TORCH_PREFIXES = {
    "embeddings": "bert.embeddings.",
    "pooler": "bert.pooler.",
    "head": "classifier.",
}


def is_text(model: str) -> bool:
    return model in BERT_SIZES


def known_models() -> list[str]:
    return [*svt.MODELS, *BERT_SIZES]


def bert_sizes(model: str) -> dict[str, int]:
    """The size fields of a BertConfig (the same names in tlx and in transformers)."""
    layers, hidden, heads, intermediate = BERT_SIZES[model]
    return {
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

    module = BertForSequenceClassification(
        BertConfig(**bert_sizes(model)), num_labels=2, dtype=dtype
    )
    forward, init = bert_forward_and_init(module)
    return ModelBundle(module, bert_param_groups(BERT_SIZES[model][0]), forward, init)


def tlx_bundle(model: str, precision: str, cfg: BenchConfig):
    import jax.numpy as jnp

    dtype = jnp.dtype(precision)
    if is_text(model):
        return bert_bundle(model, dtype)
    return svt.image_bundle(model, cfg.image_size, dtype=dtype)


def torch_bert_group(name: str) -> str:
    """transformers parameter name -> tlx group name."""
    if name.startswith("bert.encoder.layer."):
        return f"layer_{name.split('.')[3]}"
    for group, prefix in BERT_TORCH_PREFIXES.items():
        if name.startswith(prefix):
            return group
    raise KeyError(f"no tlx group for transformers parameter {name!r}")


def torch_bert(model: str, plan: str):
    """(transformers BertForSequenceClassification, random init, its Adam) frozen as tlx's plan."""
    import transformers

    from tlx.models.bert import bert_param_groups

    config = transformers.BertConfig(**bert_sizes(model), num_labels=2)
    net = transformers.BertForSequenceClassification(config)
    groups = bert_param_groups(BERT_SIZES[model][0])
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
        net, opt = svt.torchvision_model(cell.model, cell.plan)

        def logits_of(batch):
            return net(batch["image"])

    return net, opt, logits_of
