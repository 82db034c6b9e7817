"""tfds builder `local_detection_folder`: images with boxes in Pascal VOC XML or COCO JSON, as
users keep them.

    root/a.xml + root/a.png, root/more/b.xml + root/more/b.jpg        (image beside its XML)
    root/Annotations/a.xml + root/JPEGImages/a.jpg                     (VOC's own layout)
    root/annotations/instances_train.json + root/images/...            (COCO's; or JSON beside)
    root/train/..., root/validation/..., root/test/...                 (split given)

Every annotation is read and checked when the folder is scanned (tlx.data.voc, tlx.data.coco_json:
boxes inside the image, not empty, classes in the label list, the image file present), so a bad
file fails before anything is prepared or trained. Splits: train/ validation/ test/ folders; else
COCO files named for their split (*train*, *val*, *test*); else a hash of each image's annotation
reference (80/10/10 by default), as for `local_image_folder`. Labels are the given `labels`, a
COCO file's categories (by id), or every VOC class name found, sorted. Records follow tfds's detection
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
from tlx.data.coco_json import is_coco_json, read_coco
from tlx.data.image_folder import DEFAULT_FRACTIONS, SPLITS, encoded_rgb
from tlx.data.voc import AnnotationError, VocAnnotation, check_names, read_voc


@dataclasses.dataclass
class DetectionFolderConfig(tfds.core.BuilderConfig):
    """One folder's content: where it is, its labels, and (split, xml, image) per example."""

    root: str = ""
    labels: tuple[str, ...] = ()
    # (split, annotation ref: "a.xml" or "coco.json#<file name>", image), relative to root
    files: tuple[tuple[str, str, str], ...] = ()

    def __repr__(self) -> str:  # tfds logs the config; the file list can be long
        return (
            f"DetectionFolderConfig(name={self.name!r}, root={self.root!r}, "
            f"{len(self.labels)} labels, {len(self.files)} images)"
        )


def _files(folder: Path, suffix: str) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if f.lower().endswith(suffix)]
    return sorted(found)


def find_image(annotation_file: Path, filename: str) -> Path:
    """The image an annotation names: beside its file, or in VOC's JPEGImages/ or COCO's
    images/ next to the annotations' folder."""
    here = annotation_file.parent
    candidates = [here / filename, here.parent / "JPEGImages" / filename]
    candidates += [here.parent / "images" / filename, here / "images" / filename]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise AnnotationError(
        f"{annotation_file}: its image {filename!r} is not there (looked at {looked}). Put the "
        "image beside its annotations, or fix the file name."
    )


def read_annotation(root: Path, ref: str) -> VocAnnotation:
    """An example's annotation by its reference: "a.xml", or "coco.json#image file name"."""
    if "#" in ref:
        path, filename = ref.split("#", 1)
        return read_coco(str(root / path))[1][filename]
    return read_voc(root / ref)


def _json_split(name: str) -> str | None:
    """A COCO file's split from its name (instances_train2017.json -> train), if it says."""
    name = name.lower()
    for split, words in (("train", ("train",)), ("validation", ("val",)), ("test", ("test",))):
        if any(w in name for w in words):
            return split
    return None


def _scan(root: Path, presplit: bool):
    """(annotation ref, annotation, split or None) of every image, and the COCO files' labels."""
    jsons = [p for p in _files(root, ".json") if is_coco_json(p)]
    found, coco_labels = [], ()
    for path in jsons:
        labels, by_image = read_coco(str(path))
        coco_labels = coco_labels or labels
        if labels != coco_labels:
            raise AnnotationError(
                f"{path}: categories {labels} differ from another file's {coco_labels}; every "
                "split of a COCO folder needs the same categories."
            )
        relative = path.relative_to(root).as_posix()
        split = (
            relative.split("/", 1)[0]
            if presplit
            else (_json_split(path.name) if len(jsons) > 1 else None)
        )
        found += [(f"{relative}#{name}", a, split) for name, a in sorted(by_image.items())]
    for xml in _files(root, ".xml"):
        relative = xml.relative_to(root).as_posix()
        found.append((relative, read_voc(xml), relative.split("/", 1)[0] if presplit else None))
    return found, coco_labels


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
    found, coco_labels = _scan(root, presplit)  # every file checked before anything else
    if not found:
        raise AnnotationError(
            f"Detection folder {root} holds no annotations: Pascal VOC .xml files or COCO .json."
        )
    labels = (
        tuple(labels) or coco_labels or tuple(sorted({n for _, a, _ in found for n in a.names}))
    )
    files = []
    for ref, annotation, split in found:
        check_names(annotation, labels)
        annotation_file = root / ref.split("#", 1)[0]
        image = find_image(annotation_file, annotation.filename).relative_to(root).as_posix()
        files.append((split or hash_split.fraction_split(ref, fractions), ref, image))
    content = json.dumps(
        {
            "files": [
                (ref, i, (root / ref.split("#")[0]).stat().st_size, (root / i).stat().st_size)
                for _, ref, i in files
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


def example(root: Path, ref: str, image: str, labels: Sequence[str]) -> dict:
    """One record: the image (RGB JPEG/PNG bytes) and its boxes as tfds BBoxes."""
    annotation = read_annotation(root, ref)
    data = encoded_rgb(root / image)
    with Image.open(io.BytesIO(data)) as decoded:
        width, height = decoded.size
    if (width, height) != (annotation.width, annotation.height):
        raise AnnotationError(
            f"{annotation.path}: the size given is {annotation.width}x{annotation.height}, but "
            f"{image} is {width}x{height}. Fix the size (the boxes are in the image's pixels)."
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
        "path": ref,
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
        for _, ref, image in files:
            yield ref, example(root, ref, image, labels)


def builder(
    root: str | os.PathLike, data_dir: str, labels: Sequence[str] = (), fractions=None
) -> LocalDetectionFolder:
    """The folder's builder, prepared in data_dir (on first use, or after the folder changed)."""
    folder = LocalDetectionFolder(config=folder_config(root, labels, fractions), data_dir=data_dir)
    if not folder.is_prepared():
        folder.download_and_prepare(file_format="array_record")
    return folder
