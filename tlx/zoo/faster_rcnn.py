"""`model.name="faster_rcnn"`: Faster R-CNN with FPN (tlx.detection.faster_rcnn) on a tlx image
backbone, as a model bundle for config.task="detection".

    model.checkpoint="torchvision:mobilenet_v2"   the backbone's ImageNet weights (its classifier
                                                  dropped); the pyramid and heads start fresh
    model.arch="resnet", model.checkpoint=""      the same detector from random init (scratch)
    model.image_size=320                          the square canvas (FashionDet's scenes are
                                                  square, so a plain resize is torchvision's
                                                  min_size resize)

Each backbone has default pyramid endpoints (BACKBONES): ResNet's four stages with one anchor size
per level (fasterrcnn_resnet50_fpn's layout), MobileNetV2's stride-16 and stride-32 outputs and
VGG's block4 and block5 with every size on each level (fasterrcnn_mobilenet_v3_large_fpn's).
Groups are the backbone's own (prefixed), then "fpn", "rpn" and "head" (the box head and
predictor), so every transfer plan applies: feature_extraction with plan.head=3 trains the
detector on a frozen backbone, freeze_to and progressive unfreezing reach into the backbone.
BatchNorm normalises with the backbone's running statistics. torchvision's FrozenBatchNorm2d also
keeps its scale and bias fixed: model.batchnorm="fixed"; with "frozen" they train in the groups
that train. Labels 0..C-1 of the dataset are classes 1..C here, 0 the background.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import jax.numpy as jnp

from tlx.data.preprocess import DetectorInput
from tlx.detection.faster_rcnn import (
    MOBILENET_FPN_ANCHORS,
    RESNET_FPN_ANCHORS,
    FasterRCNN,
    init_faster_rcnn,
)
from tlx.detection.rcnn_transform import IMAGENET_MEAN, IMAGENET_STD
from tlx.spec import ModelSpec
from tlx.tree import flatten
from tlx.zoo.bundles import ModelBundle
from tlx.zoo.catalog import ARCHITECTURES, PARAM_GROUPS, get_entry, import_object


@dataclasses.dataclass(frozen=True)
class Backbone:
    endpoints: tuple[str, ...]  # finest first
    anchor_sizes: tuple[tuple[int, ...], ...]  # per pyramid level, the pooled one included
    kwargs: Mapping = dataclasses.field(default_factory=dict)  # the backbone as detectors build it


BACKBONES: Mapping[str, Backbone] = {
    "resnet": Backbone(("layer1", "layer2", "layer3", "layer4"), RESNET_FPN_ANCHORS),
    "mobilenet_v2": Backbone(("stage_5", "last_conv"), MOBILENET_FPN_ANCHORS),
    "vgg": Backbone(("block4", "block5"), MOBILENET_FPN_ANCHORS),
    # torchvision's fasterrcnn_mobilenet_v3_large_fpn: block 13 (the first stride-32 block) and
    # the last conv, both at stride 32; its FrozenBatchNorm2d has epsilon 1e-5.
    "mobilenet_v3": Backbone(
        ("block_13", "last_conv"), MOBILENET_FPN_ANCHORS, {"bn_epsilon": 1e-5}
    ),
}


def _backbone_arch(spec: ModelSpec):
    """(architecture name, its constructor kwargs, the catalog entry or None)."""
    entry = get_entry(spec.checkpoint) if spec.checkpoint else None
    arch = entry.arch if entry else spec.arch
    if entry is not None and spec.arch and spec.arch != arch:
        raise ValueError(f"model.arch={spec.arch!r} but {spec.checkpoint!r} is a {arch!r}.")
    if arch not in BACKBONES:
        raise ValueError(
            f"model.name='faster_rcnn' takes a backbone of {sorted(BACKBONES)} (model.checkpoint "
            f"a catalog classifier, or model.arch from scratch); got {arch or 'neither'!r}."
        )
    kwargs = dict(entry.model_kwargs) if entry else {}
    kwargs = {k: v for k, v in {**kwargs, **dict(spec.kwargs)}.items() if k != "num_classes"}
    return arch, kwargs, entry


def classifier_groups(arch: str, kwargs: Mapping) -> list[tuple[str, str]]:
    """The backbone's groups as a classifier (its "head" the classifier the detector drops)."""
    from tlx.zoo.vision import call_with_accepted

    return call_with_accepted(import_object(PARAM_GROUPS[arch]), dict(kwargs))


def detector_groups(arch: str, kwargs: Mapping, endpoints) -> list[tuple[str, str]]:
    """The backbone's groups up to its last endpoint (prefixed backbone/), then fpn, rpn, head."""
    groups = classifier_groups(arch, kwargs)
    names = [name for name, _ in groups]
    last = max(names.index(e) for e in endpoints if e in names) if endpoints else len(names) - 1
    backbone = [(n, "^backbone/" + rx.lstrip("^")) for n, rx in groups[: last + 1]]
    return [*backbone, ("fpn", r"^fpn/"), ("rpn", r"^rpn/"), ("head", r"^box_head/")]


def build_faster_rcnn(model: ModelSpec | Mapping, num_classes: int) -> ModelBundle:
    spec = ModelSpec.of(model)
    if spec.batchnorm not in ("frozen", "fixed") or spec.frozen_batchnorm != "frozen":
        raise ValueError(
            "model.name='faster_rcnn' normalises with the backbone's running statistics "
            f"(torchvision's FrozenBatchNorm2d); got model.batchnorm={spec.batchnorm!r}, "
            f"frozen_batchnorm={spec.frozen_batchnorm!r}: set model.batchnorm to 'fixed' (scale "
            "and bias fixed too, as torchvision) or 'frozen' (they train), frozen_batchnorm to "
            "'frozen'."
        )
    size = int(spec.image_size) or 320
    if size % 32:
        raise ValueError(
            f"model.image_size={size} must be a multiple of 32 (the pyramid's stride)."
        )
    arch, kwargs, entry = _backbone_arch(spec)
    layout = BACKBONES[arch]
    backbone = import_object(ARCHITECTURES[arch])(
        num_classes=None, pooling=None, **{**layout.kwargs, **kwargs}
    )
    module = FasterRCNN(
        backbone=backbone,
        endpoints=layout.endpoints,
        num_classes=num_classes + 1,  # and the background
        anchor_sizes=layout.anchor_sizes,
    )
    groups = detector_groups(arch, kwargs, layout.endpoints)

    pretrained, pretrained_state = None, {}
    if entry is not None and not spec.random_init:
        from tlx.zoo.resolve import load_catalog_weights

        variables, entry = load_catalog_weights(entry, spec.checkpoint_path or None)
        head = dict(classifier_groups(arch, kwargs)).get("head")
        pretrained = {
            f"backbone/{k}": v
            for k, v in flatten(variables["params"]).items()
            if not (head and re.search(head, k))
        }
        pretrained_state = {
            c: {f"backbone/{k}": v for k, v in flatten(t).items()}
            for c, t in variables.items()
            if c != "params"
        }

    mean, std = jnp.asarray(IMAGENET_MEAN), jnp.asarray(IMAGENET_STD)

    def canvas(batch):  # [0, 1] images -> normalised canvas and each image's size (all of it)
        images = (batch["image"] - mean) / std
        sizes = jnp.broadcast_to(jnp.asarray(images.shape[1:3], jnp.float32), (len(images), 2))
        return images, sizes

    def forward(params, model_state, batch, rng, train):
        images, sizes = canvas(batch)
        targets = None
        if "boxes" in batch:  # training and evaluation batches; prediction has none
            targets = {
                "boxes": batch["boxes"],
                "classes": batch["labels"].astype(jnp.int32) + 1,
                "mask": batch["box_mask"],
            }
        rngs = {"sampling": rng} if train and rng is not None else {}
        out, _ = module.apply(
            {"params": params, **model_state}, images, sizes, train=train, targets=targets,
            rngs=rngs, mutable=["intermediates"],
        )  # fmt: skip
        return out, model_state

    def init(rng):
        zeros = jnp.zeros((1, size, size, 3), jnp.float32)
        return init_faster_rcnn(module, rng, zeros, jnp.full((1, 2), size, jnp.float32))

    source = spec.checkpoint if pretrained is not None else "random init (from scratch)"
    return ModelBundle(
        module=module,
        groups=groups,
        forward=forward,
        init=init,
        pretrained=pretrained,
        pretrained_state=pretrained_state,
        allow_fresh=(r"^fpn/", r"^rpn/", r"^box_head/"),
        preprocessing=DetectorInput(image_size=size, letterbox=bool(spec.letterbox)),
        description=f"Faster R-CNN FPN on {arch} from {source}, {num_classes} classes, {size}px",
    )


def torchvision_layout_groups(backbone: str = "resnet50") -> list[tuple[str, str]]:
    """The catalog's COCO detectors' groups (the backbone's stages, fpn, rpn, head)."""
    arch, kwargs = {
        "resnet50": ("resnet", {"depth": 50}),
        "mobilenet_v3_large": ("mobilenet_v3", {}),
    }[backbone]
    return detector_groups(arch, kwargs, BACKBONES[arch].endpoints)
