"""Hugging Face BERT checkpoints -> tlx's BertModel / BertForSequenceClassification parameters."""

from __future__ import annotations

import json
import pathlib

import numpy as np

from tlx.models.bert import BertConfig
from tlx.weights.readers import read_tensors
from tlx.weights.rules import Rule, convert, transpose

_BERT = r"(?:bert\.)?"  # BertModel keys have no prefix; task models put the encoder under "bert."
_LAYER = _BERT + r"encoder\.layer\.(\d+)\."
_OUT = r"bert/encoder/layer_\1/"


def _dense(source: str, target: str) -> list[Rule]:
    return [
        Rule(source + r"\.weight", target + "/kernel", transpose),
        Rule(source + r"\.bias", target + "/bias"),
    ]


def _layer_norm(source: str, target: str) -> list[Rule]:
    # Original Google conversions (e.g. bert-base-uncased's .bin) still say gamma/beta.
    return [
        Rule(source + r"\.(?:weight|gamma)", target + "/scale"),
        Rule(source + r"\.(?:bias|beta)", target + "/bias"),
    ]


BERT_RULES: list[Rule] = [
    Rule(
        _BERT + r"embeddings\.(word|position|token_type)_embeddings\.weight",
        r"bert/embeddings/\1_embeddings/embedding",
    ),
    *_layer_norm(_BERT + r"embeddings\.LayerNorm", "bert/embeddings/LayerNorm"),
    *_dense(
        _LAYER + r"attention\.self\.(query|key|value)", r"bert/encoder/layer_\1/attention/self/\2"
    ),
    *_dense(_LAYER + r"attention\.output\.dense", r"bert/encoder/layer_\1/attention/output/dense"),
    *_layer_norm(
        _LAYER + r"attention\.output\.LayerNorm",
        r"bert/encoder/layer_\1/attention/output/LayerNorm",
    ),
    *_dense(_LAYER + r"intermediate\.dense", r"bert/encoder/layer_\1/intermediate/dense"),
    *_dense(_LAYER + r"output\.dense", r"bert/encoder/layer_\1/output/dense"),
    *_layer_norm(_LAYER + r"output\.LayerNorm", r"bert/encoder/layer_\1/output/LayerNorm"),
    *_dense(_BERT + r"pooler\.dense", "bert/pooler/dense"),
    *_dense(r"classifier", "classifier"),
    # Dropped on purpose: a buffer, not a parameter; and the pretraining heads (MLM / NSP).
    Rule(_BERT + r"embeddings\.(?:position_ids|token_type_ids)", None),
    Rule(r"cls\..*", None),
]


def load_hf_bert(folder) -> tuple[BertConfig, dict[str, np.ndarray]]:
    """Config and flat params ("bert/...", plus "classifier/..." if present) of a HF BERT folder."""
    folder = pathlib.Path(folder)
    config = BertConfig.from_json(folder / "config.json")
    return config, convert(read_tensors(folder), BERT_RULES)


def load_tokenizer(folder):
    """The folder's tokenizer, checked against config.json's vocab_size.

    The check matters: transformers 5's BertTokenizer(vocab_file=...) silently ignores the file and
    yields a tokenizer whose ids mean nothing to the checkpoint.
    """
    from transformers import AutoTokenizer  # heavy import, only when text is tokenized

    folder = pathlib.Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    vocab_size = json.loads((folder / "config.json").read_text())["vocab_size"]
    if len(tokenizer) != vocab_size:
        raise ValueError(
            f"tokenizer in {folder} has {len(tokenizer)} tokens but config.json says "
            f"vocab_size={vocab_size}: the tokenizer files do not belong to this checkpoint"
        )
    return tokenizer
