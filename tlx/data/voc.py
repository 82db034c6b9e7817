"""Pascal VOC XML annotations: read one file, checked, or every file of a folder.

One `<annotation>` per image: `<filename>`, `<size>` (width, height) and an `<object>` per box
(`<name>`, `<bndbox>` xmin ymin xmax ymax, optional `<difficult>`). Coordinates are kept as written
(pixel corners; VOC's own files count from 1, most tools' from 0): a box must lie inside the image
(0 <= xmin < xmax <= width, the same for y). Every problem names the file and the object, says
what was found and what to do, and is raised before any image is decoded or any step is trained.
"""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tlx.errors import InputError


class AnnotationError(InputError):
    """A VOC file tlx cannot use; the message names the file, the object and the remedy."""


@dataclasses.dataclass(frozen=True)
class VocAnnotation:
    path: str  # the XML file
    filename: str  # the image's file name, as the XML gives it
    width: int
    height: int
    boxes: np.ndarray  # float32 [N, 4] (xmin, ymin, xmax, ymax)
    names: tuple[str, ...]  # class name per box
    difficult: np.ndarray  # bool [N]


def _text(node, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(f"{where}: no <{tag}>; every VOC file needs one. Add it.")
    return child.text.strip()


def _number(node, tag: str, where: str) -> float:
    value = _text(node, tag, where)
    try:
        return float(value)
    except ValueError:
        raise AnnotationError(f"{where}: <{tag}> is {value!r}, not a number.") from None


def read_voc(path: str | os.PathLike) -> VocAnnotation:
    """One VOC XML file, checked: size present, every box inside the image and not empty."""
    path = Path(path)
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as e:
        message = f"{path}: not well-formed XML ({e}); expected a VOC <annotation>."
        raise AnnotationError(message) from None
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: the root element is <{root.tag}>, not VOC's <annotation>.")
    filename = _text(root, "filename", str(path))
    size = root.find("size")
    if size is None:
        raise AnnotationError(f"{path}: no <size>; add <size><width>..<height>..</size>.")
    width, height = int(_number(size, "width", str(path))), int(_number(size, "height", str(path)))
    boxes, names, difficult = [], [], []
    for number, obj in enumerate(root.findall("object"), start=1):
        where = f"{path}, object {number}"
        name = _text(obj, "name", where)
        box = obj.find("bndbox")
        if box is None:
            raise AnnotationError(f"{where} ({name}): no <bndbox>; give its xmin ymin xmax ymax.")
        x0, y0, x1, y1 = (_number(box, tag, where) for tag in ("xmin", "ymin", "xmax", "ymax"))
        if not (x0 < x1 and y0 < y1):
            raise AnnotationError(
                f"{where} ({name}): box xmin={x0:g} ymin={y0:g} xmax={x1:g} ymax={y1:g} is empty or "
                "inverted; xmin must be below xmax and ymin below ymax. Fix or remove the object."
            )
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise AnnotationError(
                f"{where} ({name}): box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the "
                f"{width}x{height} image; clip it to the image or fix <size>."
            )
        flag = obj.find("difficult")
        boxes.append((x0, y0, x1, y1))
        names.append(name)
        difficult.append(flag is not None and (flag.text or "0").strip() == "1")
    return VocAnnotation(
        path=str(path),
        filename=filename,
        width=width,
        height=height,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        names=tuple(names),
        difficult=np.asarray(difficult, bool),
    )


def check_names(annotation: VocAnnotation, label_names: Sequence[str]) -> np.ndarray:
    """The annotation's class ids in `label_names`; AnnotationError naming any unknown class."""
    index = {name: i for i, name in enumerate(label_names)}
    unknown = sorted({n for n in annotation.names if n not in index})
    if unknown:
        raise AnnotationError(
            f"{annotation.path}: class {', '.join(map(repr, unknown))} is not in the label list "
            f"({', '.join(label_names)}). Add it to the labels or rename the object."
        )
    return np.asarray([index[n] for n in annotation.names], np.int64)
