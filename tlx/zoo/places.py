"""Where tlx keeps files and whether it may use the network: one rule each, read at call time.

Imports nothing heavy, so `tlx.runtime` can use it before JAX starts.
"""

from __future__ import annotations

import os
import pathlib

_TRUE = ("1", "true", "yes", "on")
OFFLINE_VARS = ("TLX_OFFLINE", "HF_HUB_OFFLINE")


def offline_reason(offline: bool | None = None) -> str | None:
    """Why tlx must not touch the network (None: it may). Read at call time: huggingface_hub
    reads HF_HUB_OFFLINE once, at import."""
    if offline is not None:
        return "offline=True" if offline else None
    for var in OFFLINE_VARS:
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var}={os.environ[var]}"
    return None


def cache_root(cache_dir=None) -> pathlib.Path:
    """tlx's cache folder: `cache_dir`, else $TLX_CACHE, else $XDG_CACHE_HOME/tlx or ~/.cache/tlx."""
    if cache_dir is not None:
        return pathlib.Path(cache_dir).expanduser()
    if os.environ.get("TLX_CACHE"):
        return pathlib.Path(os.environ["TLX_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache") / "tlx"


def hub_cache_dir() -> pathlib.Path:
    """The Hugging Face cache: HF_HUB_CACHE, else HF_HOME/hub, else huggingface_hub's default."""
    if os.environ.get("HF_HUB_CACHE"):
        return pathlib.Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return pathlib.Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return pathlib.Path(constants.HF_HUB_CACHE)
