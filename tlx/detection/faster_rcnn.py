"""Faster R-CNN with a feature pyramid (Ren et al.; Lin et al.) on any tlx image backbone.

    model = FasterRCNN(backbone=ResNet(depth=50, num_classes=None, pooling=None),
                       endpoints=("layer1", "layer2", "layer3", "layer4"), num_classes=91)
    out, _ = model.apply(variables, canvas, image_sizes, mutable=["intermediates"])

The backbone runs whole and the detector reads the activations it sows under `endpoints` (finest
first), which is why `apply` needs `mutable=["intermediates"]`. Then the pyramid (fpn), the
region proposals (rpn) and the RoI heads (box_head), each torchvision's and each tested equal to
it in tests/detection. Every shape is static: proposals and detections are fixed-size arrays
with masks, so the whole detector is one jit-compiled program.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from tlx.detection.anchors import pyramid_anchors
from tlx.detection.fpn import FeaturePyramid
from tlx.detection.rcnn_loss import (
    SamplingSettings,
    roi_loss,
    roi_targets,
    rpn_loss,
    rpn_targets,
    sample_balanced,
)
from tlx.detection.roi_align import multiscale_roi_align
from tlx.detection.roi_heads import BoxHead, DetectionSettings, detect_boxes
from tlx.detection.rpn import ProposalSettings, RPNHead, select_proposals

RESNET_FPN_ANCHORS = ((32,), (64,), (128,), (256,), (512,))  # one size per level
MOBILENET_FPN_ANCHORS = ((32, 64, 128, 256, 512),) * 3  # every size on each level
RATIOS = (0.5, 1.0, 2.0)
RESNET_ENDPOINTS = ("layer1", "layer2", "layer3", "layer4")


class FasterRCNN(nn.Module):
    backbone: nn.Module
    endpoints: Sequence[str]
    num_classes: int  # including the background, class 0 (COCO: 91)
    anchor_sizes: Sequence[Sequence[float]] = RESNET_FPN_ANCHORS
    anchor_ratios: Sequence[float] = RATIOS
    fpn_channels: int = 256
    box_hidden: int = 1024
    proposals: ProposalSettings = ProposalSettings()  # evaluation: 1,000 per level and image
    train_proposals: ProposalSettings = ProposalSettings(pre_nms_top_n=2000, post_nms_top_n=2000)
    detections: DetectionSettings = DetectionSettings()
    sampling: SamplingSettings = SamplingSettings()

    def backbone_levels(self, images, train: bool):
        self.backbone(images, train=train)
        sown = self.backbone.variables.get("intermediates")
        if not sown:
            raise ValueError(
                "FasterRCNN reads its backbone's endpoints from the 'intermediates' collection: "
                "call apply(..., mutable=['intermediates'])"
            )
        missing = [e for e in self.endpoints if e not in sown]
        if missing:
            raise ValueError(f"the backbone sows no {missing}; it sows {sorted(sown)}")
        return [sown[e][-1] for e in self.endpoints]

    @nn.compact
    def __call__(self, images, image_sizes, train: bool = False, targets=None):
        """images: the padded canvas [N, Hp, Wp, 3] (RCNNTransform.batch); image_sizes [N, 2]
        each image's (h, w) in it.

        Without `targets`: {"proposals", "proposal_scores", "proposal_mask", "rpn_logits",
        "rpn_deltas", "class_logits", "box_deltas", and the detections: "boxes", "scores",
        "classes", "valid"}, boxes in canvas pixels. With `targets` ({"boxes" [N, G, 4] canvas
        pixels, "classes" [N, G] from 1, "mask" [N, G]}): the losses per image, {"loss",
        "rpn_objectness", "rpn_box", "roi_classifier", "roi_box"}, each [N], samples drawn with
        the "sampling" rng (a fixed key without one). In training that is all, from training's
        2,000 proposals, as torchvision; in evaluation the detections come too, and the losses
        use evaluation's proposals (torchvision computes no evaluation loss).

        `train` only chooses that; the backbone's BatchNorm always uses its running statistics
        (torchvision's FrozenBatchNorm2d, its default for detection fine-tuning)."""
        pyramid = FeaturePyramid(self.fpn_channels, extra_pool=True, name="fpn")(
            self.backbone_levels(images, train=False)
        )
        if len(pyramid) != len(self.anchor_sizes):
            raise ValueError(
                f"{len(self.anchor_sizes)} anchor levels for a pyramid of {len(pyramid)} (the "
                f"{len(self.endpoints)} endpoints and the pooled level)"
            )
        per_position = len(self.anchor_sizes[0]) * len(self.anchor_ratios)
        logits, deltas = RPNHead(per_position, name="rpn")(pyramid)
        anchors, counts = pyramid_anchors(
            [p.shape[1:3] for p in pyramid],
            images.shape[1:3],
            self.anchor_sizes,
            [self.anchor_ratios] * len(pyramid),
        )
        settings = self.train_proposals if train and targets is not None else self.proposals
        propose = lambda lo, de, size: select_proposals(  # noqa: E731
            lo, de, anchors, counts, size, settings
        )
        proposals, proposal_scores, proposal_mask = jax.vmap(propose)(
            jax.lax.stop_gradient(logits), jax.lax.stop_gradient(deltas), image_sizes
        )
        roi_levels = pyramid[:-1]  # the pooled level feeds the RPN only
        box_head = BoxHead(self.num_classes, self.box_hidden, name="box_head")

        def heads(boxes):  # [N, R, 4] -> logits [N, R, K], deltas [N, R, K, 4]
            pooled = jax.vmap(lambda levels, b: multiscale_roi_align(levels, b, images.shape[1:3]))(
                roi_levels, boxes
            )
            n, r = boxes.shape[:2]
            class_logits, box_deltas = box_head(pooled.reshape(n * r, *pooled.shape[2:]))
            return class_logits.reshape(n, r, -1), box_deltas.reshape(n, r, self.num_classes, 4)

        losses = {}
        if targets is not None:
            losses = self.losses(logits, deltas, anchors, proposals, proposal_mask, targets, heads)
            if train:
                return losses
        class_logits, box_deltas = heads(proposals)
        found = jax.vmap(
            lambda lo, de, boxes, mask, size: detect_boxes(
                lo, de, boxes, mask, size, self.detections
            )
        )(class_logits, box_deltas, proposals, proposal_mask, image_sizes)
        return {
            "proposals": proposals,
            "proposal_scores": proposal_scores,
            "proposal_mask": proposal_mask,
            "rpn_logits": logits,
            "rpn_deltas": deltas,
            "class_logits": class_logits,
            "box_deltas": box_deltas,
            **found,
            **losses,
        }

    def losses(self, logits, deltas, anchors, proposals, proposal_mask, targets, heads):
        """Both stages' losses per image (tlx.detection.rcnn_loss), samples drawn here."""
        s = self.sampling
        n = logits.shape[0]
        key = self.make_rng("sampling") if self.has_rng("sampling") else jax.random.key(0)
        rpn_keys, roi_keys = jnp.split(jax.random.split(key, 2 * n), 2)

        def rpn_one(lo, de, boxes, mask, key):
            label, target = rpn_targets(boxes, mask, anchors, s)
            sampled = sample_balanced(key, label, s.rpn_samples, s.rpn_positive_fraction)
            return rpn_loss(lo, de, label, target, sampled)

        def roi_sample(props, props_mask, boxes, classes, mask, key):
            candidates, _, labels, target = roi_targets(props, props_mask, boxes, classes, mask, s)
            chosen = sample_balanced(
                key, jnp.where(labels > 0, 1, labels), s.roi_samples, s.roi_positive_fraction
            )
            (index,) = jnp.nonzero(chosen, size=s.roi_samples, fill_value=0)
            real = jnp.arange(s.roi_samples) < chosen.sum()
            return candidates[index], labels[index], target[index], real

        gt = (targets["boxes"], targets["classes"], targets["mask"])
        rpn = jax.vmap(rpn_one)(logits, deltas, gt[0], gt[2], rpn_keys)
        boxes, labels, target, real = jax.vmap(roi_sample)(proposals, proposal_mask, *gt, roi_keys)
        class_logits, box_deltas = heads(boxes)
        roi = jax.vmap(roi_loss)(class_logits, box_deltas, labels, target, real)
        losses = {**rpn, **roi}
        return {"loss": sum(losses.values()), **losses}


def torchvision_layout(
    backbone: str = "resnet50",
    num_classes: int = 91,
    rpn_pre_nms_top_n: int = 1000,
    rpn_post_nms_top_n: int = 1000,
    rpn_score_threshold: float = 0.0,
) -> FasterRCNN:
    """torchvision's detection models' layouts (COCO: 91 outputs, background included), with
    their evaluation settings: "resnet50" (fasterrcnn_resnet50_fpn: ResNet-50's four stages, one
    anchor size per level) or "mobilenet_v3_large" (fasterrcnn_mobilenet_v3_large_fpn and _320:
    block 13 and the last conv, both stride 32, five sizes per level; FrozenBatchNorm's 1e-5)."""
    if backbone == "resnet50":
        from tlx.models.resnet import ResNet

        net, endpoints = ResNet(depth=50, num_classes=None, pooling=None), RESNET_ENDPOINTS
        anchors = RESNET_FPN_ANCHORS
    elif backbone == "mobilenet_v3_large":
        from tlx.models.mobilenet_v3 import MobileNetV3

        net = MobileNetV3(num_classes=None, pooling=None, bn_epsilon=1e-5)
        endpoints, anchors = ("block_13", "last_conv"), MOBILENET_FPN_ANCHORS
    else:
        raise ValueError(
            f"backbone {backbone!r}: torchvision's are 'resnet50', 'mobilenet_v3_large'"
        )
    proposals = ProposalSettings(
        rpn_pre_nms_top_n, rpn_post_nms_top_n, 0.7, 1e-3, rpn_score_threshold
    )
    return FasterRCNN(
        backbone=net,
        endpoints=endpoints,
        num_classes=num_classes,
        anchor_sizes=anchors,
        proposals=proposals,
        train_proposals=dataclasses.replace(proposals, pre_nms_top_n=2000, post_nms_top_n=2000),
    )


def init_faster_rcnn(model: FasterRCNN, rng, images, image_sizes) -> dict:
    """model.init, with the backbone's endpoints captured as the forward needs (init does not
    make 'intermediates' mutable by default) and dropped from the variables returned."""

    def init(rng, images, image_sizes):  # compiled: op by op, the proposals' NMS loop is slow
        variables = model.init(rng, images, image_sizes, mutable=True)
        return {k: v for k, v in variables.items() if k != "intermediates"}

    return jax.jit(init)(rng, images, image_sizes)
