"""Read a checkpoint's tensors into numpy: .safetensors, PyTorch .bin/.pth/.pt, or a folder."""

from __future__ import annotations

import json
import pathlib
import pickle
import re
import zipfile
from collections.abc import Mapping

import ml_dtypes
import numpy as np
import safetensors

from tlx.errors import InputError

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

# What read_tensors accepts, for the messages of files it cannot read.
EXPECTED_FORMATS = (
    "a .safetensors file, a PyTorch state dict saved with torch.save (.bin, .pth, .pt), a "
    "*.index.json of shards, or a Hugging Face model folder"
)
_CONVERT_HINT = (
    "Convert it to .safetensors where you trust it: "
    "safetensors.torch.save_file(state_dict, 'model.safetensors'), where state_dict maps names "
    "to tensors."
)

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
    raise InputError(
        f"unsupported checkpoint format {path.name!r} ({path}): expected {EXPECTED_FORMATS}."
    )


def _read_safetensors(
    path: pathlib.Path, expected: str = EXPECTED_FORMATS
) -> dict[str, np.ndarray]:
    tensors = {}
    try:
        views = safetensors.deserialize(path.read_bytes())
    except Exception as e:  # SafetensorError: not a safetensors file, or a damaged one
        raise InputError(
            f"{path} is not a readable .safetensors file ({_first_line(e)}): it is damaged or in "
            f"another format. Expected {expected}."
        ) from None
    for key, view in views:
        dtype = _SAFETENSORS_DTYPES.get(view["dtype"])
        if dtype is None:
            raise InputError(f"{path}: tensor {key!r} has unsupported dtype {view['dtype']}")
        tensors[key] = np.frombuffer(view["data"], dtype=dtype).reshape(view["shape"])
    return tensors


def _read_torch(path: pathlib.Path, expected: str = EXPECTED_FORMATS) -> dict[str, np.ndarray]:
    try:
        import torch  # lazily: only PyTorch pickles need it
    except ImportError as e:
        raise ImportError(
            f"reading {path.name} needs PyTorch (pip install torch), or convert the checkpoint to "
            ".safetensors"
        ) from e
    _check_torch_file(path, expected)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise InputError(_refused_message(path, e)) from None
    except Exception as e:  # torch raises many types (IndexError, KeyError, RuntimeError...)
        raise InputError(
            f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e)}): "
            f"it is damaged or in another format. Expected {expected}."
        ) from None
    if not isinstance(state, Mapping):
        raise InputError(
            f"{path} holds {type(state).__name__!r}, not a state dict: expected a mapping from "
            "parameter names to tensors (model.state_dict())."
        )
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
    if not tensors:
        raise InputError(
            f"{path} holds no tensors (its keys: {sorted(map(str, state))[:8]}): expected a "
            "mapping from parameter names to tensors (model.state_dict())."
        )
    return tensors


# torch.save writes a zip archive (PyTorch >= 1.6) or, before that, a pickle (protocol 2).
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_2_OR_LATER = b"\x80"


def _check_torch_file(path: pathlib.Path, expected: str) -> None:
    """Refuse what torch.save never writes before torch.load's unpickler sees it."""
    with path.open("rb") as f:
        head = f.read(40)
    if head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTOCOL_2_OR_LATER):
        return
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if not head:
        found = "an empty file"
    elif text is not None and all(c.isprintable() or c.isspace() for c in text):
        found = f"text ({text.strip()[:30]!r}...)"
    else:
        found = f"a file starting with {head[:8]!r}"
    raise InputError(
        f"{path} is not a PyTorch checkpoint: found {found}, while torch.save writes a zip "
        f"archive or a pickle. Expected {expected}."
    )


def _refused_message(path: pathlib.Path, error: Exception) -> str:
    """torch.load(weights_only=True) refused the file: say why, never 'weights_only=False'."""
    text = str(error)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        what = f"a Python object besides tensors ({found.group(1).rstrip('.')})"
    else:
        operand = re.search(r"Unsupported operand \d+", text)
        what = "pickle instructions the safe loader does not run" + (
            f" ({operand.group(0)})" if operand else ""
        )
    kind = "zip archive" if zipfile.is_zipfile(path) else "pickle"
    return (
        f"{path} was refused: this PyTorch {kind} holds {what}, so it is more than a dict of "
        "tensors. tlx reads PyTorch files with torch.load(weights_only=True), which stopped "
        f"before running anything from the file. {_CONVERT_HINT} Or use a .safetensors copy "
        "from the model's publisher."
    )


def _first_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def _read_sharded(index_path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(
            f"{index_path} is not a shard index ({type(e).__name__}: {_first_line(e)}): expected "
            'JSON with a "weight_map" from tensor names to shard files.'
        ) from None
    tensors = {}
    for shard in shards:
        tensors.update(read_tensors(index_path.parent / shard))
    return tensors
