"""Verified downloads and catalog resolution against a loopback HTTP server (no internet)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading

import pytest

from tlx.data.preprocess import ImagePreprocessing
from tlx.weights.download import ChecksumError, DownloadError, download, verify_file
from tlx.zoo import resolve
from tlx.zoo.catalog import CatalogEntry
from tlx.zoo.resolve import CheckpointNotFoundError, resolve_image_weights

BODY = bytes(range(256)) * 4096  # 1 MiB, so the transfer takes more than one read
SHA256 = hashlib.sha256(BODY).hexdigest()
MD5 = hashlib.md5(BODY).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        if self.path in ("/good.bin", "/tiny.pth"):
            self._send(BODY)
        elif self.path == "/corrupt.bin":
            self._send(BODY[:-1] + b"\x00")
        elif self.path == "/truncated.bin":
            # Announce the full length, send half, hang up.
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[: len(BODY) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/slow.bin":
            self.server.release.wait(5)  # never answers before the client's timeout
        elif self.path == "/error.bin":
            self.send_error(503, "Service Unavailable")
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    httpd.release = threading.Event()
    httpd.handle_error = lambda request, address: None  # the slow route's late write may fail
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def base_url(server):
    server.requests.clear()
    return f"http://127.0.0.1:{server.server_address[1]}"


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    "hash_value,hash_kind",
    [(SHA256, "sha256"), (SHA256[:8], "sha256_prefix"), (MD5, "md5"), (SHA256.upper(), "sha256")],
)
def test_good_file_downloads_and_verifies(tmp_path, base_url, hash_value, hash_kind):
    dest = tmp_path / "sub" / "good.bin"
    got = download(
        f"{base_url}/good.bin", dest, hash_value=hash_value, hash_kind=hash_kind, progress=False
    )
    assert got == dest
    assert dest.read_bytes() == BODY
    assert _leftovers(dest.parent) == ["good.bin"]  # no .part- file left


def test_progress_bar_is_shown(tmp_path, base_url, capsys):
    download(f"{base_url}/good.bin", tmp_path / "good.bin", hash_value=SHA256, hash_kind="sha256")
    assert "good.bin" in capsys.readouterr().err


def test_corrupt_file_is_refused_and_nothing_is_left(tmp_path, base_url):
    with pytest.raises(ChecksumError) as info:
        download(
            f"{base_url}/corrupt.bin",
            tmp_path / "corrupt.bin",
            hash_value=SHA256,
            hash_kind="sha256",
            progress=False,
        )
    message = str(info.value)
    assert SHA256 in message  # expected
    assert hashlib.sha256(BODY[:-1] + b"\x00").hexdigest() in message  # found
    assert "Retry" in message
    assert _leftovers(tmp_path) == []


def test_failed_download_keeps_the_previous_file(tmp_path, base_url):
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"the old file")
    with pytest.raises(ChecksumError):
        download(
            f"{base_url}/corrupt.bin", dest, hash_value=SHA256, hash_kind="sha256", progress=False
        )
    assert dest.read_bytes() == b"the old file"
    assert _leftovers(tmp_path) == ["model.bin"]


def test_truncated_transfer_is_an_error_and_nothing_is_left(tmp_path, base_url):
    with pytest.raises(DownloadError, match="truncated|cut off") as info:
        download(
            f"{base_url}/truncated.bin",
            tmp_path / "truncated.bin",
            hash_value=SHA256,
            hash_kind="sha256",
            progress=False,
        )
    assert not isinstance(info.value, ChecksumError)  # caught by the length, before the hash
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("path,status", [("/missing.bin", 404), ("/error.bin", 503)])
def test_http_error_names_url_and_status(tmp_path, base_url, path, status):
    with pytest.raises(DownloadError) as info:
        download(
            base_url + path,
            tmp_path / "x.bin",
            hash_value=SHA256,
            hash_kind="sha256",
            progress=False,
        )
    assert base_url + path in str(info.value)
    assert f"HTTP {status}" in str(info.value)
    assert _leftovers(tmp_path) == []


def test_connection_refused(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="connection refused"):
        download(
            f"http://127.0.0.1:{port}/x.bin",
            tmp_path / "x.bin",
            hash_value=SHA256,
            hash_kind="sha256",
            progress=False,
        )
    assert _leftovers(tmp_path) == []


def test_timeout(tmp_path, base_url):
    with pytest.raises(DownloadError, match="timeout"):
        download(
            f"{base_url}/slow.bin",
            tmp_path / "slow.bin",
            hash_value=SHA256,
            hash_kind="sha256",
            progress=False,
            timeout=0.3,
        )
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "hash_value,hash_kind",
    [("abc", "sha256_prefix"), (SHA256[:40], "sha256"), ("zz" * 16, "md5"), (SHA256, "sha1")],
)
def test_malformed_hash_is_refused_before_any_request(tmp_path, server, hash_value, hash_kind):
    server.requests.clear()
    with pytest.raises(ValueError):
        download("http://127.0.0.1:1/x", tmp_path / "x", hash_value=hash_value, hash_kind=hash_kind)
    assert server.requests == []


def test_verify_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(BODY)
    verify_file(path, hash_value=SHA256[:12], hash_kind="sha256_prefix")
    with pytest.raises(ChecksumError):
        verify_file(path, hash_value="0" * 32, hash_kind="md5")


# --- resolve_image_weights with a catalog entry that points at the loopback server -------------


def _entry(base_url: str, path: str = "/tiny.pth", hash_value: str = SHA256) -> CatalogEntry:
    return CatalogEntry(
        name="test:tiny",
        url=base_url + path,
        filename="tiny.pth",
        hash_value=hash_value,
        hash_kind="sha256",
        format="torch",
        arch="mobilenet_v2",
        converter="tlx.weights.torchvision_mobilenet:convert_mobilenet_v2",
        preprocessing=ImagePreprocessing(),
        license="test data",
    )


def test_resolve_downloads_once_then_uses_the_cache(tmp_path, server, base_url, monkeypatch):
    entry = _entry(base_url)
    path = resolve_image_weights(entry, cache_dir=tmp_path, offline=False, progress=False)
    assert path == tmp_path / "weights" / "tiny.pth"
    assert path.read_bytes() == BODY
    assert server.requests == ["/tiny.pth"]
    assert (tmp_path / "weights" / "tiny.pth.verified").is_file()

    # The second call neither downloads nor re-hashes: the marker vouches for the file.
    def no_hashing(*args, **kwargs):
        raise AssertionError("the verified cache file was hashed again")

    monkeypatch.setattr(resolve, "file_digest", no_hashing)
    assert resolve_image_weights(entry, cache_dir=tmp_path, offline=False) == path
    assert server.requests == ["/tiny.pth"]


def test_changed_cache_file_is_rechecked_and_replaced(tmp_path, server, base_url):
    entry = _entry(base_url)
    path = resolve_image_weights(entry, cache_dir=tmp_path, offline=False, progress=False)
    path.write_bytes(b"garbage")  # new size and mtime: the marker no longer applies
    assert resolve_image_weights(entry, cache_dir=tmp_path, offline=False, progress=False) == path
    assert path.read_bytes() == BODY
    assert server.requests == ["/tiny.pth", "/tiny.pth"]


def test_cache_env_var_and_offline_hit(tmp_path, server, base_url, monkeypatch):
    monkeypatch.setenv("TLX_CACHE", str(tmp_path))
    entry = _entry(base_url)
    path = resolve_image_weights(entry, offline=False, progress=False)
    assert path == tmp_path / "weights" / "tiny.pth"
    monkeypatch.setenv("TLX_OFFLINE", "1")
    assert resolve_image_weights(entry) == path  # offline, and found in the cache
    assert server.requests == ["/tiny.pth"]


@pytest.mark.parametrize("how", ["argument", "TLX_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_miss_fails_at_once_naming_cache_and_url(
    tmp_path, server, base_url, monkeypatch, how
):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TLX_OFFLINE", raising=False)
    if how != "argument":
        monkeypatch.setenv(how, "1")
    entry = _entry(base_url)
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_image_weights(
            entry, cache_dir=tmp_path, offline=True if how == "argument" else None
        )
    message = str(info.value)
    assert str(tmp_path / "weights" / "tiny.pth") in message
    assert entry.url in message
    assert "offline" in message and "To supply it" in message
    assert server.requests == []
    assert not (tmp_path / "weights").exists() or _leftovers(tmp_path / "weights") == []


def test_failed_download_is_reported_with_every_place(tmp_path, server, base_url):
    entry = _entry(base_url, path="/missing.pth")
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_image_weights(entry, cache_dir=tmp_path, offline=False, progress=False)
    message = str(info.value)
    assert "HTTP 404" in message
    assert f"cache {tmp_path / 'weights' / 'tiny.pth'}: does not exist" in message
    assert _leftovers(tmp_path / "weights") == []


def test_corrupt_download_is_reported_and_not_cached(tmp_path, server, base_url):
    entry = _entry(base_url, path="/corrupt.bin")
    with pytest.raises(CheckpointNotFoundError, match="checksum mismatch"):
        resolve_image_weights(entry, cache_dir=tmp_path, offline=False, progress=False)
    assert _leftovers(tmp_path / "weights") == []


def test_corrupt_cached_file_offline_says_so(tmp_path, server, base_url):
    entry = _entry(base_url)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "tiny.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointNotFoundError, match="sha256 mismatch"):
        resolve_image_weights(entry, cache_dir=tmp_path, offline=True)


def test_local_path_is_used_as_is(tmp_path):
    path = tmp_path / "my.pth"
    path.write_bytes(b"anything")
    assert resolve_image_weights(str(path)) == path
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        resolve_image_weights(str(tmp_path / "nope.pth"))
