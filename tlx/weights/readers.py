"""Read a checkpoint's tensors into numpy: .safetensors, PyTorch .bin/.pth/.pt, or a folder."""

from __future__ import annotations

import json
import pathlib

import ml_dtypes
import numpy as np
import safetensors

# safetensors' own numpy loader rejects bfloat16 and float8; ml_dtypes (a jax dependency) has them.
_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "F8_E4M3": ml_dtypes.float8_e4m3fn,
    "F8_E5M2": ml_dtypes.float8_e5m2,
    "I64": np.int64,
    "U64": np.uint64,
    "I32": np.int32,
    "U32": np.uint32,
    "I16": np.int16,
    "U16": np.uint16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}

# In a folder, the first of these that exists is read (safetensors first: no pickle, no torch).
FOLDER_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def read_tensors(path) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint file or model folder, by their source key."""
    path = pathlib.Path(path)
    if path.is_dir():
        for name in FOLDER_WEIGHT_FILES:
            if (path / name).is_file():
                return read_tensors(path / name)
        raise FileNotFoundError(
            f"no weights in folder {path}: looked for {', '.join(FOLDER_WEIGHT_FILES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    if path.name.endswith(".index.json"):
        return _read_sharded(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.suffix in (".bin", ".pth", ".pt"):
        return _read_torch(path)
    raise ValueError(
        f"unsupported checkpoint format {path.name!r}: expected .safetensors, .bin, .pth, .pt, "
        "*.index.json or a folder"
    )


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    tensors = {}
    for key, view in safetensors.deserialize(path.read_bytes()):
        dtype = _SAFETENSORS_DTYPES.get(view["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {key!r} has unsupported dtype {view['dtype']}")
        tensors[key] = np.frombuffer(view["data"], dtype=dtype).reshape(view["shape"])
    return tensors


def _read_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        import torch  # lazily: only PyTorch pickles need it
    except ImportError as e:
        raise ImportError(
            f"reading {path.name} needs PyTorch (pip install torch), or convert the checkpoint to "
            ".safetensors"
        ) from e
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # training checkpoints wrap the weights
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue  # e.g. a stored epoch number
        value = value.detach().cpu().contiguous()
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits
            tensors[key] = value.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        else:
            tensors[key] = value.numpy()
    return tensors


def _read_sharded(index_path: pathlib.Path) -> dict[str, np.ndarray]:
    weight_map = json.loads(index_path.read_text())["weight_map"]
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        tensors.update(read_tensors(index_path.parent / shard))
    return tensors
