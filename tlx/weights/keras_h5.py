"""Read Keras ``.h5`` weight files (the format keras.applications downloads) into flat arrays.

keras.applications' ImageNet files use the legacy Keras 2 HDF5 layout: the root lists
``layer_names``; each layer group lists its ``weight_names`` (e.g. ``block1_conv1/kernel:0``).
Keys come out as ``"<layer>/<weight>"`` without the ``:0`` suffix, e.g. ``block1_conv1/kernel``.
Files written by Keras 3's ``save_weights`` (``*.weights.h5``) use another layout and are refused
with a message saying how to get the legacy one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlx.errors import InputError


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_keras_h5(path: str | Path) -> dict[str, np.ndarray]:
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        if not path.exists():
            raise
        raise InputError(
            f"{path} is not a readable HDF5 file ({e}): expected a legacy Keras .h5 weight file, "
            "as keras.applications downloads it."
        ) from None
    with f:
        root = f.get("model_weights", f)  # full-model saves nest weights
        if "layer_names" not in root.attrs:
            raise InputError(
                f"{path} is not a legacy Keras HDF5 weight file (no 'layer_names' attribute; "
                f"top-level groups: {sorted(root.keys())[:8]}). keras.applications' downloads "
                "use that format; Keras 3 writes it with "
                "keras.src.legacy.saving.legacy_h5_format.save_weights_to_hdf5_group."
            )
        out: dict[str, np.ndarray] = {}
        for layer in map(_text, root.attrs["layer_names"]):
            group = root[layer]
            for weight in map(_text, group.attrs.get("weight_names", [])):
                name = weight.split(":")[0]
                name = name if name.startswith(layer + "/") else f"{layer}/{name.split('/')[-1]}"
                out[name] = np.asarray(group[weight])
    return out
