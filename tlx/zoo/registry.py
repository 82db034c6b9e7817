"""The model registry: ``config.model.name`` -> the builder of its :class:`ModelBundle`.

An explicit table: a new kind of model is one line here, no registration by import side effect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from tlx.errors import ConfigError
from tlx.spec import ModelSpec
from tlx.zoo.bundles import ModelBundle
from tlx.zoo.detection import build_darknet_detector
from tlx.zoo.faster_rcnn import build_faster_rcnn
from tlx.zoo.text import build_bert_classifier
from tlx.zoo.vision import build_image_classifier

BUILDERS: Mapping[str, Callable[[Mapping, int], ModelBundle]] = MappingProxyType(
    {
        "bert_classifier": build_bert_classifier,
        "darknet_detector": build_darknet_detector,
        "faster_rcnn": build_faster_rcnn,
        "image_classifier": build_image_classifier,
    }
)


def build_model(model: ModelSpec | Mapping, num_classes: int) -> ModelBundle:
    """The bundle `model` (a config's ``model`` section) describes, with `num_classes` outputs."""
    spec = ModelSpec.of(model)
    if spec.name not in BUILDERS:
        raise ConfigError(
            f"Unknown model.name {spec.name!r}; registered models: {sorted(BUILDERS)}."
        )
    return BUILDERS[spec.name](spec, num_classes)
