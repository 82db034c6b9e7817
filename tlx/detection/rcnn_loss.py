"""Faster R-CNN's training targets, sampling and losses, as torchvision's, with static shapes.

Ground truth comes padded: boxes [G, 4] (xyxy, canvas pixels), classes [G] (1.. for objects) and
a mask [G]; padded rows never match anything.

- Matching (torchvision's Matcher): each anchor or proposal takes the ground truth it overlaps
  most; IoU below `low` makes it background, between `low` and `high` ignored. The RPN also keeps,
  for each ground truth, the anchors that overlap it best even under `high` ("low-quality
  matches"), so every object has an anchor.
- Sampling (BalancedPositiveNegativeSampler): per image up to `total * positive_fraction`
  positives at random, negatives filling the rest. Here a random priority per candidate and a
  rank replace torchvision's randperm, so the sample is a fixed-size mask.
- Losses, per image: RPN objectness binary cross-entropy averaged over the sampled anchors, box
  smooth-L1 (beta 1/9) over the positives summed and divided by the number sampled; the RoI
  head's cross-entropy averaged over the sampled proposals and box smooth-L1 (beta 1/9) of the
  true class's deltas, summed over positives and divided by the number sampled. torchvision
  averages over the whole batch's samples instead; every image samples the same number (256
  anchors, 512 proposals) whenever it has that many candidates, which training's 2,000 proposals
  and thousands of anchors ensure, and then the mean of the per-image losses is the same number.
  Per-image losses add up over micro-batches and devices like every tlx task's.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from tlx.detection.boxes import box_iou, encode_boxes
from tlx.detection.roi_heads import BOX_WEIGHTS

BACKGROUND, IGNORED = 0, -1


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """torchvision's defaults: RPN 0.7 / 0.3 with low-quality matches, 256 anchors half positive;
    RoI heads 0.5 / 0.5, 512 proposals a quarter positive."""

    rpn_high: float = 0.7
    rpn_low: float = 0.3
    rpn_samples: int = 256
    rpn_positive_fraction: float = 0.5
    roi_high: float = 0.5
    roi_low: float = 0.5
    roi_samples: int = 512
    roi_positive_fraction: float = 0.25


def match(gt_boxes, gt_mask, candidates, high: float, low: float, low_quality: bool):
    """-> (matched ground-truth index [N] (0 where none), label [N]: 1 positive, 0 background,
    -1 ignored) for each candidate box, by torchvision's Matcher."""
    iou = jnp.where(gt_mask[:, None], box_iou(gt_boxes, candidates), -1.0)  # [G, N]
    best = jnp.max(iou, axis=0)
    matched = jnp.argmax(iou, axis=0)
    label = jnp.where(best >= high, 1, jnp.where(best < low, BACKGROUND, IGNORED))
    if low_quality:  # the best candidates of each real ground truth become positive
        best_per_gt = jnp.max(iou, axis=1, keepdims=True)
        is_best = (iou == best_per_gt) & gt_mask[:, None]
        label = jnp.where(jnp.any(is_best, axis=0), 1, label)
    return matched, label


def sample_balanced(key, label, total: int, positive_fraction: float):
    """A mask of at most `total` candidates: up to total * fraction positives (label 1) at
    random, then negatives (label 0) at random to fill; ignored ones (-1) never."""
    positives, negatives = label == 1, label == BACKGROUND
    n_pos = jnp.minimum(positives.sum(), int(total * positive_fraction))
    n_neg = jnp.minimum(negatives.sum(), total - n_pos)
    priority = jax.random.uniform(key, label.shape)

    def first(mask, count):  # the `count` candidates of `mask` with the lowest priority
        rank = jnp.argsort(jnp.argsort(jnp.where(mask, priority, 2.0)))
        return mask & (rank < count)

    return first(positives, n_pos) | first(negatives, n_neg)


def smooth_l1(x, beta: float = 1.0 / 9):
    x = jnp.abs(x)
    return jnp.where(x < beta, 0.5 * x * x / beta, x - 0.5 * beta)


def rpn_targets(gt_boxes, gt_mask, anchors, settings: SamplingSettings = SamplingSettings()):
    """One image -> (label [A], regression target [A, 4]) for every anchor."""
    matched, label = match(gt_boxes, gt_mask, anchors, settings.rpn_high, settings.rpn_low, True)
    return label, encode_boxes(gt_boxes[matched], anchors)


def rpn_loss(logits, deltas, label, targets, sampled):
    """One image, logits [A], deltas [A, 4] -> {"rpn_objectness", "rpn_box"} (scalars)."""
    count = jnp.maximum(sampled.sum(), 1)
    bce = optax.sigmoid_binary_cross_entropy(logits, (label == 1).astype(logits.dtype))
    positive = sampled & (label == 1)
    box = jnp.sum(jnp.where(positive[..., None], smooth_l1(deltas - targets), 0.0))
    return {
        "rpn_objectness": jnp.sum(jnp.where(sampled, bce, 0.0)) / count,
        "rpn_box": box / count,
    }


def roi_targets(
    proposals, proposal_mask, gt_boxes, gt_classes, gt_mask, settings=SamplingSettings()
):
    """One image -> (candidates [R + G, 4]: the proposals then the ground truth appended, as
    torchvision adds it; their mask; class targets [R + G] (0 background, -1 ignored or
    padding); box regression targets [R + G, 4] with weights (10, 10, 5, 5))."""
    candidates = jnp.concatenate([proposals, gt_boxes])
    mask = jnp.concatenate([proposal_mask, gt_mask])
    matched, label = match(
        gt_boxes, gt_mask, candidates, settings.roi_high, settings.roi_low, False
    )
    classes = jnp.where(label == 1, gt_classes[matched], label)
    classes = jnp.where(mask, classes, IGNORED)
    return candidates, mask, classes, encode_boxes(gt_boxes[matched], candidates, BOX_WEIGHTS)


def roi_loss(class_logits, box_deltas, classes, targets, sampled):
    """One image's sampled proposals: logits [S, K], deltas [S, K, 4], classes [S], targets
    [S, 4], sampled [S] (False: padding) -> {"roi_classifier", "roi_box"} (scalars)."""
    count = jnp.maximum(sampled.sum(), 1)
    safe = jnp.maximum(classes, 0)
    ce = optax.softmax_cross_entropy_with_integer_labels(class_logits, safe)
    own = jnp.take_along_axis(box_deltas, safe[..., None, None], axis=-2)[..., 0, :]
    positive = sampled & (classes > 0)
    box = jnp.sum(jnp.where(positive[..., None], smooth_l1(own - targets), 0.0))
    return {
        "roi_classifier": jnp.sum(jnp.where(sampled, ce, 0.0)) / count,
        "roi_box": box / count,
    }
