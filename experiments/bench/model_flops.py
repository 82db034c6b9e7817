"""Model FLOPs of a train step from the architecture's formula, beside XLA's count.

MFU is usually stated with model FLOPs (PaLM, appendix B): the matmuls and convolutions the
model needs, counted once, whatever the implementation recomputes or fuses. A step's model FLOPs
are its forward FLOPs times a plan factor:
- finetune: 3 (forward, then backward for the activations' and the weights' gradients, each
  about one forward): BERT's `6 N` per token for its `N` matmul parameters;
- feature extraction: 1 (the backbone runs forward only; the head's backward is < 0.1%);
- freeze_half (BERT only): 1 + 2 x the trainable layers' share (backward stops at the lowest
  trainable layer).
BERT's forward per sequence of `s` tokens: `2 N s + 4 L s^2 d` (N = L (4 d^2 + 2 d d_ff) in
the attention projections and the feed-forward blocks, plus the pooler and classifier; the
second term is QK^T and the attention-weighted values, `2 s^2 d` each per layer). Embedding
lookups, softmax, LayerNorm and GELU are left out, as in the usual count.
CNNs: torchvision's multiply-accumulate counts at 224 px (its weights' `_ops` metadata, in
GFLOPS, which are MACs), times 2, scaled by the image area.
"""

from __future__ import annotations

from experiments.bench.models import bert_shape, is_text

# torchvision's "GFLOPS" (multiply-accumulates) per 224 px image for the ImageNet models.
CNN_GMACS_224 = {"resnet50": 4.089, "vgg16": 15.470, "mobilenet_v2": 0.301}
PLAN_FACTOR = {"finetune": 3.0, "feature_extraction": 1.0}


def bert_forward_flops(model: str, seq_len: int, num_labels: int = 2) -> float:
    """Forward matmul FLOPs of one sequence through BERT `model` (BERT_VARIANTS) and its head."""
    layers, d, _, d_ff = bert_shape(model)
    matmul_params = layers * (4 * d * d + 2 * d * d_ff)
    per_sequence = 2 * matmul_params * seq_len + 4 * layers * seq_len**2 * d
    return per_sequence + 2 * d * d + 2 * d * num_labels  # pooler and classifier, on [CLS]


def cnn_forward_flops(model: str, image_size: int) -> float:
    return 2 * CNN_GMACS_224[model] * 1e9 * (image_size / 224) ** 2


def model_flops(model: str, plan: str, batch: int, image_size: int, seq_len: int) -> float | None:
    """Model FLOPs of one train step of `plan` on `batch` examples; None where the formula
    does not say (a CNN's freeze_half: its layers differ in cost)."""
    if is_text(model):
        forward = bert_forward_flops(model, seq_len)
        layers = bert_shape(model)[0]
        if plan == "freeze_half":
            # bert_param_groups: embeddings, layer_0..L-1, pooler, head; the top half of the
            # groups trains (speed_vs_torch.trainable_groups), so these layers do.
            groups = layers + 3
            trainable_layers = layers - (groups // 2 - 1)
            return batch * forward * (1 + 2 * trainable_layers / layers)
    elif model in CNN_GMACS_224:
        forward = cnn_forward_flops(model, image_size)
    else:
        return None
    factor = PLAN_FACTOR.get(plan)
    return None if factor is None else batch * forward * factor
