"""The model zoo: architecture records, the catalog, the one resolver, model bundles, and the
Python API. ``tlx.zoo.load(name)`` gives a converted pretrained model; ``tlx.zoo.names()`` what is
known and whether it loads offline.

Layers: tlx.models (linen modules, parameter groups) <- tlx.weights (read, download, verify,
convert) <- tlx.zoo (this package). The API is imported on first use (PEP 562), so light modules
such as tlx.zoo.places stay light.
"""

from __future__ import annotations

__all__ = ["Known", "Pretrained", "load", "names"]


def __getattr__(name: str):
    if name in __all__:
        from tlx.zoo import api

        return getattr(api, name)
    raise AttributeError(f"module 'tlx.zoo' has no attribute {name!r}")
