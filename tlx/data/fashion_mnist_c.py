"""`fashion_mnist_c/<corruption>/<severity>`: Fashion-MNIST's test images with an ImageNet-C
corruption (tfds `fashion_mnist_c_local/<corruption>_<severity>`), the shifted target domains of
the corruption adaptation benchmark.

The corruptions are corrupt-tta's (`pip install --no-deps corrupt-tta==0.1.7`: Hendrycks and
Dietterich's 19 ImageNet-C functions on current numpy / scikit-image, with their parameters for
each severity 1-5). Each 28x28 grayscale image is repeated to RGB, corrupted, and averaged back to
one channel (rounded), so the target has the source's image shape. The parameters are ImageNet-C's
(tuned for 224 px): at 28 px the blurs and the elastic transform destroy more of the image than at
224 px; severity 3 is the milder benchmark.

Which images: the 10,000 clean test images (never trained on by a source model, which sees the
54,000 train images and selects on the 6,000 validation ones), cut by sha1 of their *clean* pixels
into train 4,000 (the unlabelled target stream) / validation 1,000 (the target oracle's selection
only) / test 5,000 (every method's score), identically for every corruption and severity.
Randomness: image i is corrupted with numpy's global generator seeded from sha1 of
"<corruption>/<severity>/<i>" (corrupt-tta draws from it), restored afterwards: the same pixels on
every machine with the same library versions. Preparing takes 1-15 s per 10,000 images per
corruption on one core (defocus blur and frost are the slow ones).
"""

from __future__ import annotations

import hashlib

import numpy as np
import tensorflow_datasets as tfds

from tlx.data import fashion_mnist
from tlx.data.array_builder import ArrayImageBuilder

PREFIX = "fashion_mnist_c/"
SEVERITIES = (1, 2, 3, 4, 5)
CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "gaussian_blur",
    "glass_blur",
    "defocus_blur",
    "motion_blur",
    "zoom_blur",
    "fog",
    "frost",
    "snow",
    "spatter",
    "contrast",
    "brightness",
    "saturate",
    "jpeg_compression",
    "pixelate",
    "elastic_transform",
)


def parse_name(name: str) -> tuple[str, int]:
    """'fashion_mnist_c/<corruption>/<severity>' -> (corruption, severity), checked."""
    parts = name[len(PREFIX) :].split("/") if name.startswith(PREFIX) else []
    corruption, severity = (parts + ["", ""])[:2] if len(parts) == 2 else ("", "")
    if corruption not in CORRUPTIONS or severity not in {str(s) for s in SEVERITIES}:
        raise KeyError(
            f"{name!r} is not a corrupted Fashion-MNIST; expected "
            f"'{PREFIX}<corruption>/<severity>' with a corruption of {CORRUPTIONS} and a severity "
            f"of {SEVERITIES}, e.g. '{PREFIX}gaussian_noise/5'."
        )
    return corruption, int(severity)


def tfds_name(name: str) -> str:
    corruption, severity = parse_name(name)
    return f"fashion_mnist_c_local/{corruption}_{severity}"


def _corrupt_function():
    try:
        import corrupt_tta
    except ImportError as e:
        raise ImportError(
            "Corrupted Fashion-MNIST needs corrupt-tta and scikit-image: `pip install --no-deps "
            "corrupt-tta==0.1.7 && pip install scikit-image opencv-python-headless` (`make "
            "setup-test` installs them)."
        ) from e
    return corrupt_tta.corrupt


def image_seed(corruption: str, severity: int, index: int) -> int:
    digest = hashlib.sha1(f"{corruption}/{severity}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def corrupt_images(images: np.ndarray, corruption: str, severity: int) -> np.ndarray:
    """uint8 [N, H, W, 1] -> the same images corrupted (see the module docstring)."""
    corrupt = _corrupt_function()
    saved = np.random.get_state()
    out = np.empty_like(images)
    try:
        for i, image in enumerate(images):
            np.random.seed(image_seed(corruption, severity, i))
            rgb = np.repeat(image, 3, axis=-1)
            corrupted = np.asarray(corrupt(rgb, severity, corruption), np.float64)
            out[i, ..., 0] = np.clip(np.rint(corrupted.mean(-1)), 0, 255).astype(np.uint8)
    finally:
        np.random.set_state(saved)
    return out


class ShiftedFashionMnistTest(ArrayImageBuilder, skip_registration=True):
    """Fashion-MNIST's 10,000 test images under a shift (`shift`), split by their clean pixels, so
    every shifted target (the corruptions, `fashion_mnist_m`) cuts the same items into its splits."""

    SHAPE = (28, 28, 1)
    LABEL_NAMES = fashion_mnist.LABEL_NAMES
    VALIDATION, TEST = 1000, 5000

    def shift(self, clean: np.ndarray) -> np.ndarray:
        """uint8 [N, 28, 28, 1] clean images -> the shifted images, the same shape."""
        raise NotImplementedError

    def load(self):
        images, labels = fashion_mnist.read_split(fashion_mnist.find_dir(), "t10k")
        self._clean = images[..., None]
        return self.shift(self._clean), labels.astype(np.int64)

    def split_keys(self, images):
        return self._clean


class FashionMnistCLocal(ShiftedFashionMnistTest):
    """Fashion-MNIST test images, corrupted (one config per corruption and severity)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "corrupt-tta 0.1.7 on the t10k images; splits by sha1(clean)."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=f"{c}_{s}", description=f"{c}, severity {s}")
        for c in CORRUPTIONS
        for s in SEVERITIES
    ]
    DESCRIPTION = (
        "Fashion-MNIST's 10,000 test images with an ImageNet-C corruption (corrupt-tta): train "
        "4,000 / validation 1,000 / test 5,000 by sha1 of the clean pixels."
    )
    HOMEPAGE = "https://github.com/hendrycks/robustness"

    def shift(self, clean):
        corruption, severity = self.builder_config.name.rsplit("_", 1)
        return corrupt_images(clean, corruption, int(severity))
