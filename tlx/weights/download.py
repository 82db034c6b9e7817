"""Download a weight file so that a partial or corrupt copy can never sit under its final name.

The bytes go to ``<name>.part-<random>`` in the destination folder (same filesystem, so the final
``os.replace`` is atomic); the length is checked against Content-Length and the hash against the
catalog's before the rename. Every error path removes the temporary file, so a crash mid-transfer
leaves at most a ``.part-`` file behind (from a killed process), never a wrong file that a later
run would trust.

Hash kinds, as the upstream projects publish them:
  - ``sha256``: the full 64-hex-digit digest.
  - ``sha256_prefix``: the leading hex digits of the sha256. torchvision puts the first 8 in its
    file names (``vgg16-397923af.pth``) and ``torch.hub`` (``check_hash=True``) verifies exactly
    that prefix; we do the same. At least 8 digits are required.
  - ``md5``: the full digest; what keras.applications passes to ``get_file(file_hash=...)``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import tempfile
import urllib.error
import urllib.request

HASH_KINDS = ("sha256", "sha256_prefix", "md5")
_MIN_PREFIX = 8
_CHUNK = 1 << 20
_USER_AGENT = "tlx-weights/0.1 (+urllib)"


class DownloadError(OSError):
    """The transfer failed; nothing was written under the destination name."""


class ChecksumError(DownloadError):
    """The bytes arrived but are not the file the catalog expects."""


def _hasher(hash_kind: str):
    if hash_kind in ("sha256", "sha256_prefix"):
        return hashlib.sha256()
    if hash_kind == "md5":
        return hashlib.md5(usedforsecurity=False)  # integrity only, as Keras uses it
    raise ValueError(f"unknown hash_kind {hash_kind!r}: expected one of {', '.join(HASH_KINDS)}")


def check_hash_spec(hash_value: str, hash_kind: str) -> None:
    """Raise ValueError unless `hash_value` is a well-formed hex digest (or prefix) of its kind."""
    _hasher(hash_kind)
    value = hash_value.lower()
    if not value or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"hash {hash_value!r} is not hexadecimal")
    lengths = {"sha256": (64, 64), "sha256_prefix": (_MIN_PREFIX, 64), "md5": (32, 32)}
    low, high = lengths[hash_kind]
    if not low <= len(value) <= high:
        raise ValueError(
            f"{hash_kind} hash {hash_value!r} has {len(value)} hex digits, expected "
            + (f"{low}" if low == high else f"{low} to {high}")
        )


def hash_matches(digest: str, hash_value: str, hash_kind: str) -> bool:
    """Whether a full hex `digest` satisfies the expected value (a prefix for sha256_prefix)."""
    digest, expected = digest.lower(), hash_value.lower()
    return digest.startswith(expected) if hash_kind == "sha256_prefix" else digest == expected


def file_digest(path, hash_kind: str) -> str:
    """The full hex digest of a file, of the algorithm behind `hash_kind`."""
    h = _hasher(hash_kind)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path, *, hash_value: str, hash_kind: str) -> None:
    """Raise ChecksumError unless the file at `path` has the expected hash."""
    digest = file_digest(path, hash_kind)
    if not hash_matches(digest, hash_value, hash_kind):
        raise ChecksumError(_mismatch(str(path), hash_value, hash_kind, digest))


def _mismatch(what: str, hash_value: str, hash_kind: str, digest: str) -> str:
    found = digest[: len(hash_value)] if hash_kind == "sha256_prefix" else digest
    return (
        f"checksum mismatch for {what}: expected {hash_kind} {hash_value.lower()}, found {found}"
        f" (full digest {digest}). The file is corrupt or not the published one; it was not kept."
        " Retry the download; if it fails again the upstream file may have changed, so do not"
        " use it without checking where it came from."
    )


def download(
    url: str,
    destination,
    *,
    hash_value: str,
    hash_kind: str,
    progress: bool = True,
    timeout: float = 30,
) -> pathlib.Path:
    """Fetch `url` to `destination` (a file path), verified; returns the destination path.

    Raises DownloadError (HTTP status, connection refused, timeout, truncated transfer) or
    ChecksumError; in every case nothing is left under `destination` or in a temporary file.
    """
    check_hash_spec(hash_value, hash_kind)
    destination = pathlib.Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=destination.name + ".part-")
    tmp = pathlib.Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(url, out, hash_kind, progress=progress, timeout=timeout)
        if not hash_matches(digest, hash_value, hash_kind):
            raise ChecksumError(_mismatch(url, hash_value, hash_kind, digest))
        os.replace(tmp, destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return destination


def _fetch(url: str, out, hash_kind: str, *, progress: bool, timeout: float) -> str:
    """Stream `url` into the open file `out`; returns the hex digest of what was written."""
    how = (
        f"If this machine cannot reach it, download {url} elsewhere and copy the file over "
        "(see the error from resolve_image_weights for where it goes)."
    )
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    h = _hasher(hash_kind)
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            with _progress_bar(progress, expected, url) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}. {how}") from e
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, ConnectionRefusedError):
            raise DownloadError(f"download of {url} failed: connection refused. {how}") from e
        if isinstance(reason, TimeoutError):  # socket.timeout is TimeoutError
            raise DownloadError(
                f"download of {url} failed: no answer within {timeout} s (timeout). {how}"
            ) from e
        raise DownloadError(f"download of {url} failed: {reason}. {how}") from e
    except TimeoutError as e:
        raise DownloadError(
            f"download of {url} stalled: no data for {timeout} s after {received} bytes "
            f"(timeout). {how}"
        ) from e
    except (http.client.IncompleteRead, ConnectionError) as e:
        raise DownloadError(
            f"download of {url} was cut off after {received} bytes ({type(e).__name__}). {how}"
        ) from e
    if expected is not None and received != expected:
        raise DownloadError(
            f"download of {url} was truncated: received {received} of the {expected} bytes "
            f"announced by Content-Length. {how}"
        )
    return h.hexdigest()


def _progress_bar(enabled: bool, total: int | None, url: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=url.rsplit("/", 1)[-1],
        disable=not enabled,
        leave=False,
    )
