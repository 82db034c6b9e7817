"""tfds builder `local_detection_folder`: images with Pascal VOC XML boxes, as users keep them.

    root/a.xml + root/a.png, root/more/b.xml + root/more/b.jpg        (image beside its XML)
    root/Annotations/a.xml + root/JPEGImages/a.jpg                     (VOC's own layout)
    root/train/..., root/validation/..., root/test/...                 (split given)

Every XML is read and checked when the folder is scanned (tlx.data.voc: boxes inside the image,
not inverted, classes in the label list, the image file present), so a bad file fails before
anything is prepared or trained. Without train/ validation/ test/ folders each image's split is
fixed by a hash of its XML's relative path (80/10/10 by default), as for `local_image_folder`.
Labels are the given `labels`, or every class name found, sorted. Records follow tfds's detection
datasets (voc/2007, coco): `image`, `objects/bbox` (tfds BBox: ymin, xmin, ymax, xmax as fractions
of the image), `objects/label`, `objects/difficult`, and the XML's relative `path`. A folder is
prepared once per content (the config name hashes the files, their sizes and the labels).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from tlx.data import hash_split
from tlx.data.image_folder import DEFAULT_FRACTIONS, SPLITS, encoded_rgb
from tlx.data.voc import AnnotationError, check_names, read_voc


@dataclasses.dataclass
class DetectionFolderConfig(tfds.core.BuilderConfig):
    """One folder's content: where it is, its labels, and (split, xml, image) per example."""

    root: str = ""
    labels: tuple[str, ...] = ()
    files: tuple[tuple[str, str, str], ...] = ()  # (split, xml, image), relative to root

    def __repr__(self) -> str:  # tfds logs the config; the file list can be long
        return (
            f"DetectionFolderConfig(name={self.name!r}, root={self.root!r}, "
            f"{len(self.labels)} labels, {len(self.files)} images)"
        )


def _xml_files(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if f.lower().endswith(".xml")]
    return sorted(found)


def find_image(xml: Path, filename: str) -> Path:
    """The image an XML names: beside it, or in VOC's JPEGImages/ next to its Annotations/."""
    candidates = [xml.parent / filename, xml.parent.parent / "JPEGImages" / filename]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise AnnotationError(
        f"{xml}: its image {filename!r} is not there (looked at {looked}). Put the image beside "
        "its XML, or fix <filename>."
    )


def folder_config(
    root: str | os.PathLike, labels: Sequence[str] = (), fractions=None
) -> DetectionFolderConfig:
    """Scans and checks `root`; its config (name = hash of content, labels and split rule)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"Detection folder {root} does not exist or is not a folder.")
    fractions = {**dict(DEFAULT_FRACTIONS), **dict(fractions or {})}
    top = {p.name for p in root.iterdir() if p.is_dir()}
    presplit = "train" in top and top <= set(SPLITS) | {".git"}
    xmls = _xml_files(root)
    if not xmls:
        raise AnnotationError(f"Detection folder {root} holds no .xml (Pascal VOC) files.")
    annotations = [read_voc(xml) for xml in xmls]  # every file checked before anything else
    labels = tuple(labels) or tuple(sorted({n for a in annotations for n in a.names}))
    files = []
    for xml, annotation in zip(xmls, annotations):
        check_names(annotation, labels)
        relative = xml.relative_to(root).as_posix()
        image = find_image(xml, annotation.filename).relative_to(root).as_posix()
        split = relative.split("/", 1)[0] if presplit else None
        files.append((split or hash_split.fraction_split(relative, fractions), relative, image))
    content = json.dumps(
        {
            "files": [
                (x, i, (root / x).stat().st_size, (root / i).stat().st_size) for _, x, i in files
            ],
            "labels": labels,
            "fractions": None if presplit else fractions,
        }
    )
    return DetectionFolderConfig(
        name="h" + hash_split.digest(content).hex()[:16],
        description=f"Boxes of {root}",
        root=str(root),
        labels=labels,
        files=tuple(files),
    )


def example(root: Path, xml: str, image: str, labels: Sequence[str]) -> dict:
    """One record: the image (RGB JPEG/PNG bytes) and its boxes as tfds BBoxes."""
    annotation = read_voc(root / xml)
    data = encoded_rgb(root / image)
    with Image.open(io.BytesIO(data)) as decoded:
        width, height = decoded.size
    if (width, height) != (annotation.width, annotation.height):
        raise AnnotationError(
            f"{root / xml}: <size> says {annotation.width}x{annotation.height}, but {image} is "
            f"{width}x{height}. Fix <size> (the boxes are in the image's pixels)."
        )
    x0, y0, x1, y1 = annotation.boxes.T
    bbox = np.stack([y0 / height, x0 / width, y1 / height, x1 / width], -1)
    return {
        "image": data,
        "objects": {
            "bbox": bbox.astype(np.float32).reshape(-1, 4),
            "label": check_names(annotation, labels),
            "difficult": annotation.difficult,
        },
        "path": xml,
    }


class LocalDetectionFolder(tfds.core.GeneratorBasedBuilder):
    """Images with VOC XML boxes in a local folder; configs come from `folder_config`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "VOC XML folders; splits by sha1(relative path) or folders."}

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        objects = {
            "bbox": tfds.features.BBoxFeature(),
            "label": tfds.features.ClassLabel(names=list(config.labels)),
            "difficult": np.bool_,
        }
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Images with VOC XML boxes in {config.root}.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "objects": tfds.features.Sequence(objects),
                    "path": tfds.features.Text(),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # local files
        files = self.builder_config.files
        return {
            split: self._generate_examples([f for f in files if f[0] == split])
            for split in SPLITS
            if any(f[0] == split for f in files)
        }

    def _generate_examples(self, files) -> Iterator[tuple[str, dict]]:
        root, labels = Path(self.builder_config.root), self.builder_config.labels
        for _, xml, image in files:
            yield xml, example(root, xml, image, labels)


def builder(
    root: str | os.PathLike, data_dir: str, labels: Sequence[str] = (), fractions=None
) -> LocalDetectionFolder:
    """The folder's builder, prepared in data_dir (on first use, or after the folder changed)."""
    folder = LocalDetectionFolder(config=folder_config(root, labels, fractions), data_dir=data_dir)
    if not folder.is_prepared():
        folder.download_and_prepare(file_format="array_record")
    return folder
