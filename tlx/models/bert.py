"""BERT in flax.linen, with parameter names that mirror Hugging Face's so the conversion table
reads one-to-one: `encoder.layer.3.attention.self.query.weight` becomes
`encoder/layer_3/attention/self/query/kernel`.

transformers 5 has no Flax models, so tlx owns this one; tests/models/test_bert.py proves it equal
to transformers' PyTorch BertModel layer by layer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from tlx.models.dropout import Dropout


def gelu_erf(x):
    """Exact GELU as PyTorch writes it, x/2 (1 + erf(x/sqrt 2)). jax's exact ``nn.gelu`` uses
    erfc for accuracy far in the negative tail, which XLA's CPU backend evaluates at half the
    speed of erf (3.2 vs 1.4 ms on a 1024 x 3072 block, 2-core CPU); the two agree to float32 rounding
    (at most 9.5e-7 apart over [-12, 12], values and gradients)."""
    return 0.5 * x * (1.0 + lax.erf(x * jnp.asarray(1.0 / math.sqrt(2.0), x.dtype)))


# HF's "gelu" is the exact erf form; "gelu_new" / "gelu_pytorch_tanh" are the tanh approximation.
_ACTIVATIONS = {
    "gelu": gelu_erf,
    "gelu_python": gelu_erf,
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
    "relu": nn.relu,
}

# "eager": tlx's own einsums, float32 softmax and attention-probability dropout. The others go
# through jax.nn.dot_product_attention, which has no dropout: "xla" and "cudnn" are its
# implementations, "fused" is cuDNN where jax accepts it and XLA elsewhere (`fused_attention`).
ATTN_IMPLEMENTATIONS = ("eager", "xla", "cudnn", "fused")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    attn_implementation: str = "eager"  # ATTN_IMPLEMENTATIONS; Hugging Face's name for the choice

    def __post_init__(self):
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation={self.attn_implementation!r} is not supported; expected one "
                f"of {list(ATTN_IMPLEMENTATIONS)}"
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"hidden_act={self.hidden_act!r} is not supported; expected one of "
                f"{sorted(_ACTIVATIONS)}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )

    def for_fused_attention(self, implementation: str = "fused") -> BertConfig:
        """A copy attending through jax.nn.dot_product_attention (`implementation`: "xla", "cudnn"
        or "fused") with attention_probs_dropout_prob=0, since that function has no dropout. This
        changes training, not evaluation: attention probabilities are no longer dropped (hidden
        dropout still is), so a run is not the same regularisation as the checkpoint's recipe."""
        return dataclasses.replace(
            self, attn_implementation=implementation, attention_probs_dropout_prob=0.0
        )

    @classmethod
    def from_dict(cls, d: dict) -> BertConfig:
        """Build from a Hugging Face config.json dict; keys this model does not use are ignored,
        among them transformers' own `_attn_implementation` ("sdpa", ...: a PyTorch kernel)."""
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            raise ValueError(
                f"config has model_type={model_type!r}; tlx's BertModel only loads 'bert' "
                "checkpoints (RoBERTa/ELECTRA/DistilBERT differ in embeddings or names)"
            )
        position_type = d.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(
                f"position_embedding_type={position_type!r} is not supported; only 'absolute'"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, path) -> BertConfig:
        return cls.from_dict(json.loads(pathlib.Path(path).read_text()))


class BertEmbeddings(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids, token_type_ids, *, deterministic):
        cfg = self.config
        if input_ids.shape[-1] > cfg.max_position_embeddings:
            # jnp.take would silently clamp the position ids instead.
            raise ValueError(
                f"sequence length {input_ids.shape[-1]} exceeds max_position_embeddings="
                f"{cfg.max_position_embeddings}; truncate the inputs"
            )
        embed = lambda n, name: nn.Embed(n, cfg.hidden_size, dtype=self.dtype, name=name)
        positions = jnp.arange(input_ids.shape[-1])[None, :]
        x = (
            embed(cfg.vocab_size, "word_embeddings")(input_ids)
            + embed(cfg.max_position_embeddings, "position_embeddings")(positions)
            + embed(cfg.type_vocab_size, "token_type_embeddings")(token_type_ids)
        )
        x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name="LayerNorm")(x)
        return Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)


def token_dense(x, features: int, dtype, name: str):
    """``nn.Dense`` on the tokens of ``x`` [..., in] flattened to [tokens, in] (the same parameters,
    named `name` in the calling module). XLA's CPU backward of a dense layer on a 3-D input
    contracts the weight gradient over two axes and ran 1.5x slower than the 2-D matrix product
    (768 -> 3072 at 8x128 tokens: 189 ms against 123 ms for forward and backward)."""
    y = nn.Dense(features, dtype=dtype, name=name)(x.reshape(-1, x.shape[-1]))
    return y.reshape(*x.shape[:-1], features)


def fused_attention(q, k, v, kv_lengths, implementation: str, scale: float):
    """jax.nn.dot_product_attention over q, k, v [B, L, heads, head_dim], keys past `kv_lengths`
    [B] masked. Its XLA path computes the logits with float32 accumulation and output
    (DotAlgorithmPreset.BF16_BF16_F32 for bfloat16), scales and softmaxes them in float32 and casts
    the probabilities to the input dtype for the value product; cuDNN's flash attention likewise
    accumulates and softmaxes in float32."""
    attend = lambda impl: jax.nn.dot_product_attention(
        q, k, v, scale=scale, key_value_seq_lengths=kv_lengths, implementation=impl
    )
    on_gpu = jax.default_backend() == "gpu"
    if implementation == "cudnn" and not on_gpu:
        # jax's own error is "cuDNN is not detected."
        raise ValueError(
            f'attn_implementation="cudnn" needs an NVIDIA GPU; jax\'s backend is '
            f'{jax.default_backend()!r}. Use "fused" for cuDNN where it applies and XLA elsewhere.'
        )
    if implementation != "fused":
        return attend(implementation)
    # jax 0.10's implementation=None always means XLA ("automatic selection" is a TODO there), so
    # tlx chooses: cuDNN on a GPU unless jax rejects the call while tracing it (NotImplementedError
    # for float32 inputs or head dims cuDNN lacks, RuntimeError when cuDNN is missing).
    if on_gpu:
        try:
            return attend("cudnn")
        except (NotImplementedError, RuntimeError):
            pass
    return attend("xla")


class BertSelfAttention(nn.Module):
    """Self-attention over `padding`: for "eager" an additive bias [B, 1, 1, L] (or None), for
    the others the key lengths [B] (or None); `attention_padding` makes either."""

    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, padding, *, deterministic):
        cfg = self.config
        eager = cfg.attn_implementation == "eager"
        if not eager and not deterministic and cfg.attention_probs_dropout_prob > 0:
            raise ValueError(
                f"attn_implementation={cfg.attn_implementation!r} has no attention-probability "
                f"dropout, but attention_probs_dropout_prob={cfg.attention_probs_dropout_prob} "
                "and the model is training: set attention_probs_dropout_prob=0 (hidden dropout "
                "still applies; config.for_fused_attention() does it) or use "
                'attn_implementation="eager"'
            )
        heads = cfg.num_attention_heads
        head_dim = cfg.hidden_size // heads
        split = lambda t: t.reshape(*t.shape[:-1], heads, head_dim)  # [B, L, heads, head_dim]
        dense = lambda name: token_dense(x, cfg.hidden_size, self.dtype, name)
        q, k, v = split(dense("query")), split(dense("key")), split(dense("value"))
        if not eager:
            context = fused_attention(q, k, v, padding, cfg.attn_implementation, head_dim**-0.5)
            return context.reshape(*context.shape[:2], cfg.hidden_size)
        # Scaling q (B*L*H values) is cheaper than scaling the scores (B*heads*L*L).
        q = q * jnp.asarray(head_dim**-0.5, self.dtype)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k)
        if padding is not None:
            scores = scores + padding
        # Softmax in float32 so a bfloat16 model keeps stable attention weights.
        probs = nn.softmax(scores.astype(jnp.float32), axis=-1).astype(self.dtype)
        if cfg.attention_probs_dropout_prob > 0 and not deterministic:
            probs = Dropout(cfg.attention_probs_dropout_prob)(probs, deterministic=False)
        context = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
        return context.reshape(*context.shape[:2], cfg.hidden_size)


class BertDenseResidual(nn.Module):
    """dense -> dropout -> LayerNorm(x + residual): HF's BertSelfOutput and BertOutput."""

    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, residual, *, deterministic):
        cfg = self.config
        x = token_dense(x, cfg.hidden_size, self.dtype, "dense")
        x = Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)
        ln = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name="LayerNorm")
        return ln(x + residual)


class BertAttention(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, padding, *, deterministic):
        context = BertSelfAttention(self.config, self.dtype, name="self")(
            x, padding, deterministic=deterministic
        )
        return BertDenseResidual(self.config, self.dtype, name="output")(
            context, x, deterministic=deterministic
        )


class BertIntermediate(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = token_dense(x, self.config.intermediate_size, self.dtype, "dense")
        return _ACTIVATIONS[self.config.hidden_act](x)


class BertLayer(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, padding, *, deterministic):
        x = BertAttention(self.config, self.dtype, name="attention")(
            x, padding, deterministic=deterministic
        )
        h = BertIntermediate(self.config, self.dtype, name="intermediate")(x)
        return BertDenseResidual(self.config, self.dtype, name="output")(
            h, x, deterministic=deterministic
        )


class BertEncoder(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, padding, *, deterministic):
        hidden_states = [x]
        for i in range(self.config.num_hidden_layers):
            x = BertLayer(self.config, self.dtype, name=f"layer_{i}")(
                x, padding, deterministic=deterministic
            )
            hidden_states.append(x)
        return x, tuple(hidden_states)


class BertPooler(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        cls_token = x[:, 0]
        return jnp.tanh(
            nn.Dense(self.config.hidden_size, dtype=self.dtype, name="dense")(cls_token)
        )


def attention_padding(attention_mask, config: BertConfig, dtype):
    """The attention mask [B, L] (1 keep, 0 pad, or None) as BertSelfAttention takes it.

    "eager": an additive bias [B, 1, 1, L]; the dtype's min keeps exp() at exactly 0 without the
    NaNs that -inf gives on fully masked rows. The others: key lengths [B] int32, the mask's row
    sums, which assumes right padding (every row's ones first), as tlx's batches are
    (tlx/data/text.py, MakeBatch._make: attention_mask[row, :n] = 1). Padded query positions
    still attend to their row's keys, as in "eager", so their outputs stay finite.
    """
    if attention_mask is None:
        return None
    if config.attn_implementation != "eager":
        return attention_mask.sum(-1).astype(jnp.int32)
    keep = attention_mask[:, None, None, :].astype(bool)
    return jnp.where(keep, 0.0, jnp.finfo(dtype).min).astype(dtype)


class BertModel(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32
    add_pooling_layer: bool = True

    @nn.compact
    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        *,
        deterministic=True,
        output_hidden_states=False,
    ):
        """Returns (last_hidden_state [B, L, H], pooled [B, H] or None[, hidden_states]).

        With attn_implementation other than "eager", `attention_mask` must be right-padded (see
        `attention_padding`)."""
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = BertEmbeddings(self.config, self.dtype, name="embeddings")(
            input_ids, token_type_ids, deterministic=deterministic
        )
        padding = attention_padding(attention_mask, self.config, self.dtype)
        x, hidden_states = BertEncoder(self.config, self.dtype, name="encoder")(
            x, padding, deterministic=deterministic
        )
        pooled = None
        if self.add_pooling_layer:
            pooled = BertPooler(self.config, self.dtype, name="pooler")(x)
        if output_hidden_states:
            return x, pooled, hidden_states
        return x, pooled


def masked_mean(hidden, attention_mask=None):
    """Mean over tokens, counting only those the attention mask keeps (sentence-transformers)."""
    if attention_mask is None:
        return hidden.mean(axis=1)
    weights = attention_mask.astype(hidden.dtype)[..., None]
    return (hidden * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1e-9)


class BertForSequenceClassification(nn.Module):
    config: BertConfig
    num_labels: int
    pooling: str = "pooler"  # "pooler" (HF: CLS + dense + tanh), "cls", or "mean"
    classifier_dropout: float | None = None  # None -> hidden_dropout_prob, as HF
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, *, deterministic=True):
        if self.pooling not in ("pooler", "cls", "mean"):
            raise ValueError(f"pooling={self.pooling!r}; expected 'pooler', 'cls' or 'mean'")
        # Without the pooler there is no pooler/dense to hold unused (and never-trained) params.
        bert = BertModel(
            self.config, self.dtype, add_pooling_layer=self.pooling == "pooler", name="bert"
        )
        hidden, pooled = bert(
            input_ids, attention_mask, token_type_ids, deterministic=deterministic
        )
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "mean":
            pooled = masked_mean(hidden, attention_mask)
        # The classifier's input, sown as the endpoint "pooled" (feature alignment in tlx.adaptation)
        self.sow("intermediates", "pooled", pooled)
        rate = self.classifier_dropout
        if rate is None:
            rate = self.config.hidden_dropout_prob
        pooled = Dropout(rate)(pooled, deterministic=deterministic)
        return nn.Dense(self.num_labels, dtype=self.dtype, name="classifier")(pooled)


def bert_param_groups(
    num_layers: int, prefix: str = "bert/", head: str = "classifier/", has_pooler: bool = True
) -> list[tuple[str, str]]:
    """Ordered input -> output groups of regexes over '/'-joined param paths, for freezing plans."""
    p = re.escape(prefix)
    groups = [("embeddings", rf"^{p}embeddings/")]
    groups += [(f"layer_{i}", rf"^{p}encoder/layer_{i}/") for i in range(num_layers)]
    if has_pooler:
        groups.append(("pooler", rf"^{p}pooler/"))
    groups.append(("head", rf"^{re.escape(head)}"))
    return groups
