"""What a pretrained image model expects of its input, as data: the catalog gives one per checkpoint.

Pixels arrive as uint8 HWC (grayscale or RGB). The pipeline converts to RGB (or BGR), resizes the
shorter side to ``resize_size`` and centre-crops ``image_size`` (evaluation) or takes a random
resized crop of ``image_size`` (training), then maps values: ``x / 255 * (hi - lo) + lo`` for
``value_range=(lo, hi)``, then ``(x - mean) / std``.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ImagePreprocessing:
    image_size: int = 224  # square crop fed to the model
    resize_size: int = 256  # shorter side before the centre crop (evaluation)
    value_range: tuple[float, float] = (0.0, 1.0)  # uint8 0..255 mapped onto this range first
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # in value_range units, per channel
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"  # "BGR" for Keras' caffe-style VGG weights
    interpolation: str = "bilinear"  # PIL resampling name

    def __post_init__(self):
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.resize_size < self.image_size:
            raise ValueError(
                f"resize_size {self.resize_size} is smaller than image_size {self.image_size}"
            )

    def scaled_to(self, image_size: int) -> ImagePreprocessing:
        """The same recipe at another crop size, keeping the resize/crop ratio (e.g. 256/224)."""
        ratio = self.resize_size / self.image_size
        return dataclasses.replace(
            self, image_size=image_size, resize_size=int(round(image_size * ratio))
        )


# torchvision's ImageNet recipe (resize 256, crop 224, mean/std on [0, 1]).
TORCHVISION_IMAGENET = ImagePreprocessing()


@dataclasses.dataclass(frozen=True)
class DetectorInput:
    """A detector's input recipe (tlx.detection.inputs): the whole image to a square of
    `image_size` pixels, values x / 255, RGB. Plain resize (aspect not kept; OpenCV's
    blobFromImage, the default for darknet models) or darknet's letterbox (aspect kept, the
    border filled with 0.5). Boxes map back to the original image either way."""

    image_size: int = 416
    letterbox: bool = False
