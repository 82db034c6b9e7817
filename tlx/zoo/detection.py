"""`model.name="darknet_detector"`: a darknet detector as a model bundle, for training.

    model.checkpoint="darknet:yolov3-tiny"   COCO weights; the heads resized for the task's
                                             classes, keeping each anchor's box and objectness
    model.arch="yolov3-tiny", model.checkpoint=""   the same cfg from random init (from scratch);
                                             arch is a bundled cfg's name or a .cfg path

Inputs follow tlx.data.preprocess.DetectorInput: `model.image_size` (0: the cfg's width) and
`model.letterbox`. BatchNorm follows `model.batchnorm` / `model.frozen_batchnorm` as for
classifiers (tlx.zoo.vision.make_forward), and the groups are backbone, neck, head_0, ... so every
transfer plan (feature extraction: heads only; freeze_to; progressive) applies unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp

from tlx.data.preprocess import DetectorInput
from tlx.models.darknet import Darknet, darknet_param_groups
from tlx.models.darknet_cfg import parse_cfg
from tlx.spec import ModelSpec
from tlx.tree import flatten
from tlx.zoo.bundles import ModelBundle, compute_dtype
from tlx.zoo.catalog import get_entry
from tlx.zoo.vision import make_forward


def build_darknet_detector(model: ModelSpec | Mapping, num_classes: int) -> ModelBundle:
    spec = ModelSpec.of(model)
    entry = get_entry(spec.checkpoint) if spec.checkpoint else None
    if entry is not None and entry.arch != "darknet":
        raise ValueError(
            f"model.checkpoint={spec.checkpoint!r} is a {entry.arch} classifier, not a darknet "
            "detector; use a darknet:... checkpoint, or model.arch=<cfg> from scratch."
        )
    cfg = entry.model_kwargs["cfg"] if entry else spec.arch
    if not cfg:
        raise ValueError(
            "model.name='darknet_detector' needs model.checkpoint (e.g. 'darknet:yolov3-tiny') or "
            "model.arch (a cfg: a bundled name such as 'yolov3-tiny', or a .cfg path)."
        )
    if spec.arch and entry and spec.arch != cfg:
        raise ValueError(f"model.arch={spec.arch!r} but {spec.checkpoint!r} is built from {cfg!r}.")
    cfg_spec = parse_cfg(cfg)
    if cfg_spec.width != cfg_spec.height:
        raise ValueError(f"cfg {cfg!r} is {cfg_spec.width}x{cfg_spec.height}; tlx feeds squares.")
    size = int(spec.image_size) or cfg_spec.width
    if size % 32:
        raise ValueError(
            f"model.image_size={size} must be a multiple of 32 (the detector's stride)."
        )
    module = Darknet(cfg=cfg, num_classes=num_classes, image_size=size, dtype=compute_dtype(spec))
    groups = darknet_param_groups(cfg)

    pretrained, pretrained_state = None, {}
    if entry is not None and not spec.random_init:
        from tlx.weights.darknet import adapt_heads
        from tlx.zoo.resolve import load_catalog_weights

        variables, entry = load_catalog_weights(entry, spec.checkpoint_path or None)
        pretrained = flatten(variables["params"])
        if num_classes != entry.num_classes:
            pretrained = adapt_heads(pretrained, cfg_spec, num_classes)
        pretrained_state = {c: flatten(t) for c, t in variables.items() if c != "params"}

    def init(rng):
        return module.init(rng, jnp.zeros((1, size, size, 3), jnp.float32), train=False)

    def forward_for(trainable=None):
        return make_forward(
            module,
            spec.batchnorm,
            groups,
            spec.frozen_batchnorm,
            trainable_groups=None if trainable is None else frozenset(trainable),
            all_outputs=True,
        )

    source = "random init (from scratch)" if pretrained is None else spec.checkpoint
    return ModelBundle(
        module=module,
        groups=groups,
        forward=forward_for(),
        forward_for_stage=forward_for,
        init=init,
        pretrained=pretrained,
        pretrained_state=pretrained_state,
        preprocessing=DetectorInput(image_size=size, letterbox=bool(spec.letterbox)),
        description=f"darknet {cfg_spec.name} from {source}, {num_classes} classes, {size}px",
    )
