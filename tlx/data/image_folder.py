"""tfds builder `local_image_folder`: a folder with one subfolder of images per class.

    root/cat/001.jpg, root/cat/more/002.png, root/dog/003.jpeg, ...      (split here by hash)
    root/train/cat/001.jpg, root/validation/..., root/test/...           (split given)

Classes are the subfolder names, sorted (label i = i-th name, like torchvision's ImageFolder);
images are the files, at any depth, whose extension PIL registers (README.txt, .DS_Store and
other files are ignored; hidden files and folders too). Without train/ validation/ test/ folders,
each image's split is fixed by a hash of its relative path (`hash_split.fraction_split`, default
80/10/10), so adding images never moves others between splits; with them, the folders are the
splits (those present; a root whose subfolders are all split names is taken as pre-split).

A folder is prepared once per content: the builder config's name is a hash of the relative paths
and sizes of its images (and of the fractions), so an edited folder is prepared again into a new
config folder of the data_dir, and an unchanged one is reused.

Each image is decoded with PIL when it is prepared (a corrupt or truncated file fails then, with
its path in the error). Stored bytes are the original file for RGB JPEG/PNG; anything else
(grayscale, palette, RGBA, CMYK, GIF, BMP, TIFF, WebP, ...) is converted to RGB and stored as
PNG, so every record is a 3-channel JPEG/PNG that tfds's `Image` feature, and TensorFlow's
decoder, read correctly. Alpha is dropped. No TensorFlow is needed: tfds's `Image` feature takes
encoded bytes as they are.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import tensorflow_datasets as tfds
from PIL import Image

from tlx.data import hash_split

SPLITS = ("train", "validation", "test")
DEFAULT_FRACTIONS = (("train", 0.8), ("validation", 0.1), ("test", 0.1))


@dataclasses.dataclass
class ImageFolderConfig(tfds.core.BuilderConfig):
    """One folder's content: where it is, its classes and images, and their splits."""

    root: str = ""
    classes: tuple[str, ...] = ()
    # (split, path relative to root, class index), sorted by path
    files: tuple[tuple[str, str, int], ...] = ()
    presplit: bool = False
    fractions: tuple[tuple[str, float], ...] = DEFAULT_FRACTIONS

    def __repr__(self) -> str:  # tfds logs the config; the file list can be long
        return (
            f"ImageFolderConfig(name={self.name!r}, root={self.root!r}, "
            f"{len(self.classes)} classes, {len(self.files)} images, presplit={self.presplit})"
        )


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _images_under(folder: Path, extensions: set[str]) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(dirpath) / f
            for f in filenames
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in extensions
        ]
    return sorted(found)


def folder_config(
    root: str | os.PathLike, fractions: Mapping[str, float] | None = None
) -> ImageFolderConfig:
    """Scans `root` and returns its config (name = hash of its content and split rule)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} does not exist or is not a folder.")
    fractions = dict(fractions or DEFAULT_FRACTIONS)
    if set(fractions) != set(SPLITS) or any(f < 0 for f in fractions.values()):
        raise ValueError(f"fractions must give {SPLITS} non-negative values; got {fractions}.")
    if abs(sum(fractions.values()) - 1) > 1e-9:
        raise ValueError(f"fractions must sum to 1; got {fractions}.")
    fractions = {name: float(fractions[name]) for name in SPLITS}

    top = _subfolders(root)
    presplit = (
        bool(top) and {p.name for p in top} <= set(SPLITS) and "train" in {p.name for p in top}
    )
    split_roots = [(p.name, p) for p in top] if presplit else [("", root)]
    classes = sorted({c.name for _, folder in split_roots for c in _subfolders(folder)})
    if not classes:
        raise ValueError(
            f"Image folder {root} has no class subfolders; expected root/<class>/<image> or "
            "root/{train,validation,test}/<class>/<image>."
        )
    extensions = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    files, counts = [], dict.fromkeys(classes, 0)
    for split, folder in split_roots:
        for label, name in enumerate(classes):
            for path in (
                _images_under(folder / name, extensions) if (folder / name).is_dir() else []
            ):
                relative = path.relative_to(root).as_posix()
                files.append(
                    (split or hash_split.fraction_split(relative, fractions), relative, label)
                )
                counts[name] += 1
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise ValueError(f"Class folders {empty} of {root} hold no images PIL can open.")
    files.sort(key=lambda f: f[1])

    content = json.dumps(
        {
            "files": [(rel, (root / rel).stat().st_size) for _, rel, _ in files],
            "presplit": presplit,
            "fractions": None if presplit else fractions,
        }
    )
    return ImageFolderConfig(
        name="h" + hash_split.digest(content).hex()[:16],
        description=f"Images of {root}",
        root=str(root),
        classes=tuple(classes),
        files=tuple(files),
        presplit=presplit,
        fractions=tuple(fractions.items()),
    )


def encoded_rgb(path: Path) -> bytes:
    """The file's bytes if an RGB JPEG/PNG, else a PNG of it in RGB; fails naming the file."""
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes everything: truncated files fail here
            if image.format in ("JPEG", "PNG") and image.mode == "RGB":
                return data
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
            return buffer.getvalue()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise ValueError(f"Cannot read image {path}: {type(e).__name__}: {e}") from e


class LocalImageFolder(tfds.core.GeneratorBasedBuilder):
    """Images in class subfolders of a local folder; configs come from `folder_config`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "RGB JPEG/PNG records; splits by sha1(relative path) or folders."}

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Images in class subfolders of {config.root}.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=list(config.classes)),
                    "path": tfds.features.Text(),  # relative to the root
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # local files
        config = self.builder_config
        return {
            split: self._generate_examples([f for f in config.files if f[0] == split])
            for split in SPLITS
            if any(f[0] == split for f in config.files)
        }

    def _generate_examples(self, files) -> Iterator[tuple[str, dict]]:
        root = Path(self.builder_config.root)
        for _, relative, label in files:
            image = encoded_rgb(root / relative)
            yield relative, {"image": image, "label": label, "path": relative}


def builder(
    root: str | os.PathLike, data_dir: str, fractions: Mapping[str, float] | None = None
) -> LocalImageFolder:
    """The folder's builder, prepared in data_dir (on first use, or after the folder changed)."""
    folder = LocalImageFolder(config=folder_config(root, fractions), data_dir=data_dir)
    if not folder.is_prepared():
        folder.download_and_prepare(file_format="array_record")
    return folder
