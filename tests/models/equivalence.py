"""Shared helpers of the equivalence tests: tlx models against torchvision / keras.applications."""

from __future__ import annotations

import numpy as np


def assert_close(ours, theirs) -> float:
    """Same shape, float32, and max |ours - theirs| <= 1e-4 * max(1, max |theirs|); returns the
    max abs difference (tests print or compare it)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert ours.dtype == np.float32, ours.dtype
    diff = float(np.max(np.abs(ours - theirs)))
    tol = 1e-4 * max(1.0, float(np.max(np.abs(theirs))))
    assert diff <= tol, f"max abs diff {diff} > {tol}"
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
