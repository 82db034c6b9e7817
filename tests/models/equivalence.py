"""Shared helpers of the equivalence tests: tlx models against torchvision / keras.applications /
transformers.

How close is close enough
-------------------------
Two float32 implementations of the same network never agree bit for bit: every matmul, conv and
reduction rounds, and the order of the additions differs between libraries (XLA vs oneDNN / MKL),
CPUs (AVX2 vs AVX-512 GEMM blocking), and thread counts. Each layer then amplifies what came in.
`assert_close` therefore bounds the difference relative to the output's scale:

    max |ours - theirs| <= rtol * max |theirs|

The scale is the largest magnitude, not each element's: rounding in a sum is proportional to the
magnitudes summed, so a small element that is a difference of large terms (a logit of 0.4 in a
batch whose logits reach 4.6) carries the same absolute error as the large ones. An elementwise
rtol fails there; an absolute tol is meaningless without the scale (issue #18: an atol of 1e-5
tuned on one CPU failed on another at 1.8e-5, on logits reaching 4.6, i.e. 33 float32 ulps).

`rtol` sits between the float32 noise and the smallest mistake a test must catch. The default,
1e-4 (about 840 ulps of FLOAT32_EPS), is for the convnets: their differences measured at most 55
ulps (GoogLeNet endpoints; ResNet-101 6, VGG 19, Keras VGG 28), and a wrong weight layout moves
outputs by O(1). BERT needs a tighter one, BERT_RTOL below, because exact and tanh GELU
differ there by only ~1e-3 relative.
"""

from __future__ import annotations

import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # 2**-23: one float32 ulp at 1.0

# BERT against transformers (tests/models/test_bert.py, tests/weights/test_hf_bert.py). The tiny
# BERT's wide init (INIT_RANGE = 0.5) makes it ill-conditioned, so float32 rounding grows layer by
# layer. Against transformers run in float64, over 60 seeds of the tests' classifier (1 and 2
# threads; MKL's AVX2, AVX-512 and compatible code paths; XLA jit and eager), either float32
# implementation's max error grows from ~2 ulps of the scale after the embeddings to ~20 after
# layer 0 and ~60 after layer 1; in the logits it reaches 36 (transformers) and 88 (tlx: spread over
# its ops, flax's one-pass LayerNorm variance and XLA's matmul order among them), and tlx -
# transformers 97. Rounding alone: run in float64, tlx matches transformers to 1e-14. 256 ulps is
# 2.6x that worst seed, 8x the 33 ulps that failed the old atol=1e-5 on an Intel Xeon (1.8e-5 on
# logits reaching 4.6) and 37x the 7 ulps measured here on those logits. The smallest real mistake
# the tests must catch, tanh GELU for exact, moves those logits by ~8300 ulps (32x the tolerance):
# test_tolerance_spans_float32_rounding_but_not_a_wrong_conversion. The real MiniLM (6 layers,
# trained weights) is better conditioned: at most 9 ulps.
BERT_RTOL = 256 * FLOAT32_EPS  # ~3.05e-5


def max_abs_diff(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.max(np.abs(ours - theirs))) if ours.size else 0.0


def assert_close(ours, theirs, rtol: float = 1e-4, *, err_msg: str = "") -> float:
    """Same shape, ours float32, and max |ours - theirs| <= rtol * max |theirs| (see the module
    docstring for why relative to the largest magnitude); returns the max abs difference (tests
    print or compare it)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape, err_msg)
    assert ours.dtype == np.float32, (ours.dtype, err_msg)
    diff = max_abs_diff(ours, theirs)
    scale = float(np.max(np.abs(theirs))) if theirs.size else 0.0
    tol = rtol * scale
    assert diff <= tol, (
        f"{err_msg}{': ' if err_msg else ''}max abs diff {diff:.3g} > {tol:.3g} = rtol {rtol:.3g}"
        f" * scale {scale:.3g} ({diff / max(scale, 1e-30) / FLOAT32_EPS:.1f} float32 ulps of"
        " the scale)"
    )
    return diff


def torch_state_dict(model) -> dict[str, np.ndarray]:
    """numpy copies (torch updates BatchNorm buffers in place in train mode)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def randomize_batchnorm(model) -> None:
    """Random running statistics and affine parameters, so that a wrong mapping shows."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
