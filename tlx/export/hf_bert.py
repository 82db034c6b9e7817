"""A trained BERT classifier back to Hugging Face's format: `config.json` + `model.safetensors`
that transformers loads, with LoRA merged (tlx.peft.merge_lora) before export.

The parameter names invert tlx.weights.hf_bert's table (`bert/encoder/layer_3/.../kernel` ->
`bert.encoder.layer.3....weight`, dense kernels transposed back); every export is converted
forward again through that table and must give back the same arrays, so the two stay inverse.

With the pooler (`model.pooling="pooler"`) the folder is a BertForSequenceClassification. With
mean or [CLS] pooling (sentence-transformers' encoders, e.g. the default MiniLM run) no
transformers class computes the same logits, so the folder is the encoder as a BertModel and
the head goes beside it: `classifier.safetensors` (`weight` [labels, hidden], `bias`) and
`tlx_head.json` saying how to pool, so logits = classifier(pool(BertModel(...))).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tlx.errors import InputError
from tlx.models.bert import BertConfig
from tlx.weights.hf_bert import BERT_RULES
from tlx.weights.rules import convert

_LEAF = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}


def hf_key(path: str) -> str:
    """'bert/encoder/layer_3/attention/self/query/kernel' -> its transformers key."""
    *module, leaf = path.split("/")
    if leaf not in _LEAF:
        raise InputError(f"no Hugging Face name for the parameter {path!r} (leaf {leaf!r})")
    dotted = re.sub(r"layer_(\d+)", r"layer.\1", ".".join(module))
    return f"{dotted}.{_LEAF[leaf]}"


def to_hf_tensors(flat_params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """transformers' state dict for tlx's flat BERT parameters, checked by converting it back."""
    tensors = {}
    for path, value in flat_params.items():
        value = np.asarray(value, np.float32)
        tensors[hf_key(path)] = np.ascontiguousarray(value.T if path.endswith("/kernel") else value)
    back = convert(tensors, BERT_RULES)
    mismatched = [p for p in flat_params if not np.array_equal(back.get(p), flat_params[p])]
    if mismatched or set(back) != set(flat_params):
        raise AssertionError(
            f"the export does not convert back to the run's parameters: {mismatched[:3]}"
        )
    return tensors


def hf_config(config: BertConfig, label_names: Sequence[str], with_pooler: bool) -> dict:
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields.pop("attn_implementation")  # tlx's own choice of kernel, not the model's
    architecture = "BertForSequenceClassification" if with_pooler else "BertModel"
    fields.update(model_type="bert", architectures=[architecture])
    fields["id2label"] = {str(i): name for i, name in enumerate(label_names)}
    fields["label2id"] = {name: i for i, name in enumerate(label_names)}
    return fields


def export_hf_bert(
    flat_params: Mapping[str, np.ndarray],
    config: BertConfig,
    pooling: str,
    label_names: Sequence[str],
    out: Path,
) -> list[Path]:
    """Write the folder; returns the files written."""
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    with_pooler = pooling == "pooler"
    encoder = {p: v for p, v in flat_params.items() if with_pooler or p.startswith("bert/")}
    tensors = to_hf_tensors(encoder)
    if not with_pooler:  # a BertModel's keys have no "bert." prefix
        tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
    written = [out / "config.json", out / "model.safetensors"]
    (out / "config.json").write_text(
        json.dumps(hf_config(config, label_names, with_pooler), indent=2) + "\n"
    )
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    if not with_pooler:
        head = {
            "weight": np.ascontiguousarray(np.asarray(flat_params["classifier/kernel"]).T),
            "bias": np.asarray(flat_params["classifier/bias"]),
        }
        save_file(head, str(out / "classifier.safetensors"))
        note = {
            "pooling": pooling,
            "labels": list(label_names),
            "logits": "classifier(pool(BertModel(...).last_hidden_state))",
        }
        (out / "tlx_head.json").write_text(json.dumps(note, indent=2) + "\n")
        written += [out / "classifier.safetensors", out / "tlx_head.json"]
    return written
