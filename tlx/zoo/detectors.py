"""Pretrained detectors from the catalog (darknet's YOLO weights), converted and ready to detect.

    import tlx.zoo
    detector = tlx.zoo.load("darknet:yolov3-tiny")
    detector.detect([image])   # per image: [{"label", "class_id", "score", "box"}], best first

Images go in as uint8 arrays of any size; the entry's DetectorInput recipe (plain resize to
416x416 by default, as OpenCV's blobFromImage; letterbox on request) prepares them, and boxes come
back as (x0, y0, x1, y1) in the original image's pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tlx.data.preprocess import DetectorInput
from tlx.models.darknet_cfg import DarknetSpec


@dataclasses.dataclass
class PretrainedDetector:
    """A converted darknet detector: `module.apply(variables, x)` gives the raw [yolo] outputs."""

    name: str
    module: nn.Module
    variables: dict
    spec: DarknetSpec
    groups: list[tuple[str, str]]
    preprocessing: DetectorInput
    labels: tuple[str, ...]
    description: str = ""
    # (the variables folded, folded module, folded variables): see inference_model
    _folded: tuple | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    kind = "detector"

    def inference_model(self) -> tuple[nn.Module, dict]:
        """(module, variables) with BatchNorm folded into the convolutions
        (tlx.models.darknet.fold_batchnorm): the same outputs, fewer passes over memory.
        Refolded when `variables` is replaced."""
        from tlx.models.darknet import fold_batchnorm

        if self._folded is None or self._folded[0] is not self.variables:
            module = self.module.clone(folded_batchnorm=True)
            self._folded = (self.variables, module, fold_batchnorm(self.variables))
        return self._folded[1], self._folded[2]

    def preprocess(self, images: Sequence[np.ndarray]):
        """uint8 images -> (float32 [N, S, S, 3], one tlx.detection.inputs.BoxTransform each)."""
        from tlx.detection.inputs import prepare_batch

        return prepare_batch(images, self.preprocessing)

    def __call__(self, batch):
        """The raw [yolo] outputs for a preprocessed batch (BatchNorm folded)."""
        module, variables = self.inference_model()
        return _jitted_apply(module)(variables, jnp.asarray(batch))

    def detect(
        self,
        images: Sequence[np.ndarray],
        score_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 100,
    ) -> list[list[dict]]:
        """Per image, its detections above `score_threshold` after class-aware NMS, best first:
        {"label", "class_id", "score", "box": [x0, y0, x1, y1] in the image's pixels}."""
        from tlx.detection.report import image_detections
        from tlx.detection.yolo import detect

        batch, transforms = self.preprocess(images)
        size = self.preprocessing.image_size
        found = detect(
            self(batch), self.spec, (size, size), score_threshold, iou_threshold, max_detections
        )
        found = jax.tree.map(np.asarray, found)
        return [
            image_detections(found, i, transform, np.shape(images[i]), self.labels)
            for i, transform in enumerate(transforms)
        ]


_JITTED: dict[int, tuple] = {}


def _jitted_apply(module: nn.Module):
    if id(module) not in _JITTED:
        _JITTED[id(module)] = (module, jax.jit(lambda v, x: module.apply(v, x, train=False)))
    return _JITTED[id(module)][1]


@dataclasses.dataclass
class PretrainedTwoStageDetector:
    """A converted torchvision Faster R-CNN: `detect(images)` as PretrainedDetector's, with the
    detector's own transform (tlx.detection.rcnn_transform: aspect kept, short side to
    min_size, padded to 32) and torchvision's evaluation settings."""

    name: str
    module: nn.Module
    variables: dict
    groups: list[tuple[str, str]]
    preprocessing: object  # tlx.detection.rcnn_transform.RCNNTransform
    labels: tuple[str, ...]
    description: str = ""

    kind = "detector"

    def __call__(self, canvas, image_sizes):
        """The detector's outputs (tlx.detection.faster_rcnn) for a prepared canvas."""
        return _jitted_rcnn(self.module)(self.variables, jnp.asarray(canvas), image_sizes)

    def detect(
        self,
        images: Sequence[np.ndarray],
        score_threshold: float = 0.5,
        iou_threshold: float | None = None,
        max_detections: int = 100,
    ) -> list[list[dict]]:
        """Per image, its detections above `score_threshold`, best first: {"label",
        "class_id", "score", "box": [x0, y0, x1, y1] in the image's pixels}. The model's own
        class-wise NMS (0.5) has already run; `iou_threshold` is accepted for the interface."""
        from tlx.detection.inputs import as_rgb

        del iou_threshold
        floats = [as_rgb(image).astype(np.float32) / 255 for image in images]
        canvas, sizes, back = self.preprocessing.batch(floats)
        found = jax.tree.map(np.asarray, self(canvas, sizes))
        rows = []
        for i in range(len(images)):
            keep = found["valid"][i] & (found["scores"][i] > score_threshold)
            keep &= np.arange(keep.shape[0]) < max_detections
            scale = np.asarray([back[i, 1], back[i, 0]] * 2, np.float32)  # (sx, sy, sx, sy)
            rows.append(
                [
                    {
                        "label": self.labels[int(c)],
                        "class_id": int(c),
                        "score": float(score),
                        "box": [float(v) for v in box * scale],
                    }
                    for box, score, c in zip(
                        found["boxes"][i][keep], found["scores"][i][keep], found["classes"][i][keep]
                    )
                ]
            )
        return rows


def _jitted_rcnn(module: nn.Module):
    if id(module) not in _JITTED:
        run = jax.jit(lambda v, x, s: module.apply(v, x, s, mutable=["intermediates"])[0])
        _JITTED[id(module)] = (module, run)
    return _JITTED[id(module)][1]


def load_detector(entry, checkpoint_path=None, offline=None):
    """A detector catalog entry -> PretrainedDetector (darknet) or PretrainedTwoStageDetector
    (torchvision's Faster R-CNN); weights found by tlx.zoo.resolve."""
    if entry.arch == "faster_rcnn":
        return _load_two_stage(entry, checkpoint_path, offline)
    return _load_darknet(entry, checkpoint_path, offline)


def _load_two_stage(entry, checkpoint_path, offline) -> PretrainedTwoStageDetector:
    from tlx.weights.labels import label_names
    from tlx.zoo import resolve
    from tlx.zoo.faster_rcnn import torchvision_layout_groups

    variables, entry = resolve.load_catalog_weights(
        entry, checkpoint_path, offline=offline, progress=True
    )
    labels = label_names(entry.labels)
    return PretrainedTwoStageDetector(
        name=entry.name,
        module=entry.build_model(num_classes=entry.num_classes),
        variables=jax.tree.map(jnp.asarray, variables),
        groups=torchvision_layout_groups(entry.model_kwargs.get("backbone", "resnet50")),
        preprocessing=entry.preprocessing,
        labels=labels,
        description=f"Faster R-CNN FPN from {entry.name}, {len(labels)} outputs",
    )


def _load_darknet(entry, checkpoint_path=None, offline=None) -> PretrainedDetector:
    """A darknet catalog entry -> PretrainedDetector (weights found by tlx.zoo.resolve)."""
    from tlx.models.darknet import darknet_param_groups
    from tlx.weights.labels import label_names
    from tlx.zoo import resolve

    variables, entry = resolve.load_catalog_weights(
        entry, checkpoint_path, offline=offline, progress=True
    )
    module = entry.build_model()
    labels = label_names(entry.labels)
    return PretrainedDetector(
        name=entry.name,
        module=module,
        variables=jax.tree.map(jnp.asarray, variables),
        spec=module.spec,
        groups=darknet_param_groups(**dict(entry.model_kwargs)),
        preprocessing=entry.preprocessing,
        labels=labels,
        description=f"{module.spec.name} from {entry.name}, {len(labels)} classes",
    )
