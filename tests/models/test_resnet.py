"""tlx's ResNet against torchvision's resnet{18,50,101} in eval mode, via the weight converter.

Every comparison is block by block (stem, layer1 .. layer4), then logits and pooled features, on
random weights whose BatchNorm statistics and affine parameters are randomised so that a mistake
in any of them shows. The per-depth cases run eagerly: compiling ResNet-101 costs far more than
running it once on a 64x64 batch of 2, and the headless variants reuse the eager op cache. The
one-off ResNet-18 checks (odd size, train mode) are jitted, which is cheaper for them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from tests.models.equivalence import assert_close as _assert_close  # noqa: E402
from tests.models.equivalence import randomize_batchnorm  # noqa: E402
from tests.models.equivalence import torch_state_dict as _state_dict  # noqa: E402
from tlx.models.resnet import (  # noqa: E402
    ENDPOINT_STRIDES,
    RESNET_ENDPOINTS,
    ResNet,
    resnet_param_groups,
    stem_max_pool,
)
from tlx.transfer.groups import assign_groups  # noqa: E402
from tlx.tree import flatten  # noqa: E402
from tlx.weights.rules import ConversionError  # noqa: E402
from tlx.weights.torchvision_resnet import (  # noqa: E402
    convert_resnet,
    resnet_expected_shapes,
    torch_key,
)

DEPTHS = (18, 50, 101)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """torch's spinning intra-op threads run 3-5x slower when the cores are shared (as with
    JAX's own pool, or parallel test workers): one thread is faster here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_torch_resnet(depth: int):
    """Random weights, and random BN statistics and affine parameters so that they matter."""
    torch.manual_seed(depth)
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    randomize_batchnorm(model)
    with torch.no_grad():
        # Small (never zero) scales on each residual branch's last BN keep ResNet-101's stream
        # near unit size, so the relative tolerance stays tight for every channel.
        for m in model.modules():
            if isinstance(
                m, torchvision.models.resnet.BasicBlock | torchvision.models.resnet.Bottleneck
            ):
                last_bn = m.bn3 if hasattr(m, "bn3") else m.bn2
                last_bn.weight.uniform_(0.1, 0.3)
    return model.eval()


def _torch_endpoints(model, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """torchvision's forward, unrolled to keep the output of every block, NHWC like ours."""
    out = {}
    with torch.no_grad():
        x = torch.from_numpy(x_nchw)
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        out["stem"] = x
        for name in RESNET_ENDPOINTS[1:]:
            x = getattr(model, name)(x)
            out[name] = x
        logits = model.fc(torch.flatten(model.avgpool(x), 1))
        np.testing.assert_allclose(logits.numpy(), model(torch.from_numpy(x_nchw)).numpy())
    out = {k: np.transpose(v.numpy(), (0, 2, 3, 1)) for k, v in out.items()}
    out["logits"] = logits.numpy()
    return out


def _apply(depth: int, variables, x, *, jit: bool = False, **kwargs):
    """`ResNet(depth, **module kwargs).apply(variables, x, train=..., mutable=...)`."""
    apply_kwargs = {k: kwargs.pop(k) for k in ("train", "mutable") if k in kwargs}
    fn = lambda v, x: ResNet(depth, **kwargs).apply(v, x, **apply_kwargs)
    return (jax.jit(fn) if jit else fn)(variables, jnp.asarray(x))


def _inputs(size: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32)
    return x, np.transpose(x, (0, 2, 3, 1))  # NCHW for torch, NHWC for flax


@pytest.fixture(scope="module", params=DEPTHS, ids=lambda d: f"resnet{d}")
def case(request):
    """Per depth, built once: the torch model, its converted variables, and torchvision's
    endpoints and logits on the 64x64 inputs."""
    depth = request.param
    model = _random_torch_resnet(depth)
    variables = convert_resnet(_state_dict(model), depth)
    x_nchw, x_nhwc = _inputs(64)
    return dict(
        depth=depth,
        model=model,
        variables=variables,
        x=x_nhwc,
        ref=_torch_endpoints(model, x_nchw),
    )


def test_logits_and_every_endpoint_match_torchvision(case):
    logits, state = _apply(case["depth"], case["variables"], case["x"], mutable=["intermediates"])
    inter = state["intermediates"]
    assert set(inter) == set(RESNET_ENDPOINTS)  # each sown exactly once: see the unpacking
    diffs = {}
    for name in RESNET_ENDPOINTS:
        (got,) = inter[name]
        assert got.shape[1] == 64 // ENDPOINT_STRIDES[name]
        diffs[name] = _assert_close(got, case["ref"][name])
    diffs["logits"] = _assert_close(logits, case["ref"]["logits"])
    assert logits.shape == (2, 1000)
    print(f"resnet{case['depth']} max abs diffs: {diffs}")


@pytest.mark.parametrize("pooling", ["avg", "max", None])
def test_headless_features_match_torchvision(case, pooling):
    variables = dict(case["variables"])
    variables["params"] = {k: v for k, v in variables["params"].items() if k != "fc"}
    got = _apply(case["depth"], variables, case["x"], num_classes=None, pooling=pooling)
    layer4 = case["ref"]["layer4"]
    expected = {"avg": layer4.mean(axis=(1, 2)), "max": layer4.max(axis=(1, 2)), None: layer4}
    _assert_close(got, expected[pooling])


@pytest.fixture(scope="module")
def resnet18_state_dict():
    return _state_dict(_random_torch_resnet(18))


def test_odd_input_size_matches_torchvision():
    """65x65: the stem conv gives 33x33, so the max pool's symmetric (1, 1) padding and every
    stride-2 conv's padding are exercised on odd maps (33 -> 17 -> 9 -> 5 -> 3)."""
    model = _random_torch_resnet(18)
    variables = convert_resnet(_state_dict(model), 18)
    x_nchw, x_nhwc = _inputs(65)
    ref = _torch_endpoints(model, x_nchw)
    logits, state = _apply(18, variables, x_nhwc, jit=True, mutable=["intermediates"])
    for name in RESNET_ENDPOINTS:
        _assert_close(state["intermediates"][name][0], ref[name])
    assert state["intermediates"]["layer4"][0].shape[1:3] == (3, 3)
    _assert_close(logits, ref["logits"])


@pytest.mark.parametrize("size", [8, 9])
def test_stem_max_pool_pads_like_torch(size):
    """On all-negative inputs a zero-padded pool would put 0 on the border; torch pads with -inf."""
    x = -np.random.default_rng(size).uniform(1.0, 2.0, (2, 3, size, size)).astype(np.float32)
    expected = torch.nn.MaxPool2d(3, stride=2, padding=1)(torch.from_numpy(x)).numpy()
    got = stem_max_pool(jnp.asarray(np.transpose(x, (0, 2, 3, 1))))
    np.testing.assert_array_equal(np.asarray(got), np.transpose(expected, (0, 2, 3, 1)))


def test_train_mode_uses_batch_statistics_like_torch():
    """train=True normalises with the batch's statistics and updates the running mean as torch's
    momentum=0.1 does (the running var differs on purpose: flax keeps the biased estimate)."""
    model = _random_torch_resnet(18).train()
    variables = convert_resnet(_state_dict(model), 18)
    x_nchw, x_nhwc = _inputs(64)
    with torch.no_grad():
        expected = model(torch.from_numpy(x_nchw)).numpy()
    logits, state = _apply(18, variables, x_nhwc, jit=True, train=True, mutable=["batch_stats"])
    _assert_close(logits, expected)
    new_mean = np.asarray(state["batch_stats"]["layer3_0"]["downsample_1"]["mean"])
    _assert_close(new_mean, model.layer3[0].downsample[1].running_mean.numpy())
    old_mean = variables["batch_stats"]["layer3_0"]["downsample_1"]["mean"]
    assert np.max(np.abs(new_mean - old_mean)) > 1e-3  # the update happened


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_param_groups_cover_every_param_once(depth):
    # the converter's cached abstract init: every "params/..." path of ResNet(depth)
    paths = [t.split("/", 1)[1] for t in resnet_expected_shapes(depth) if t.startswith("params/")]
    groups = resnet_param_groups()
    assignment = assign_groups(paths, groups)  # raises on any uncovered / doubly covered param
    assert set(assignment) == set(paths)
    assert [name for name, _ in groups] == ["stem", *RESNET_ENDPOINTS[1:], "head"]
    assert assignment["conv1/kernel"] == "stem"
    assert assignment["bn1/scale"] == "stem"
    assert assignment["layer1_0/conv1/kernel"] == "layer1"
    assert assignment["layer2_0/downsample_0/kernel"] == "layer2"
    assert assignment["layer3_1/bn2/bias"] == "layer3"
    assert assignment["layer4_1/conv2/kernel"] == "layer4"
    assert assignment["fc/kernel"] == "head"
    assert assignment["fc/bias"] == "head"


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_every_torchvision_key_has_a_target(depth):
    """The model's variables and torchvision's state dict correspond one to one (less the BN step
    counters), so `torch_key` names missing keys correctly at every depth."""
    with torch.device("meta"):  # names and shapes only, no weights allocated
        model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    keys = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    targets = resnet_expected_shapes(depth)
    assert {torch_key(t) for t in targets} == keys
    assert len(targets) == len(keys)


def test_converted_tree_matches_init(case):
    """Same paths and shapes as a fresh init: nothing missing, nothing extra."""
    init = jax.eval_shape(
        lambda: ResNet(case["depth"]).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    )
    assert set(case["variables"]) == {"params", "batch_stats"}
    for collection in ("params", "batch_stats"):
        want = {k: v.shape for k, v in flatten(init[collection]).items()}
        got = {k: v.shape for k, v in flatten(case["variables"][collection]).items()}
        assert got == want, collection


def test_missing_and_extra_keys_are_named_together(resnet18_state_dict):
    sd = dict(resnet18_state_dict)
    del sd["layer2.0.downsample.1.running_var"]
    sd["layer5.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)  # matches no rule
    with pytest.raises(ConversionError) as info:
        convert_resnet(sd, 18)
    message = str(info.value)
    assert "layer2.0.downsample.1.running_var" in message
    assert "batch_stats/layer2_0/downsample_1/var" in message
    assert "layer5.0.conv1.weight" in message
    assert len(info.value.problems) == 2, message


def test_extra_block_and_missing_key_are_named(resnet18_state_dict):
    """A key that matches the rules but names no variable (resnet18 has no layer4.2)."""
    sd = dict(resnet18_state_dict)
    del sd["fc.bias"]
    sd["layer4.2.conv1.weight"] = np.zeros((512, 512, 3, 3), np.float32)
    with pytest.raises(ConversionError) as info:
        convert_resnet(sd, 18)
    message = str(info.value)
    assert "'fc.bias'" in message
    assert "params/layer4_2/conv1/kernel" in message
    assert len(info.value.problems) == 2, message


def test_wrong_depth_names_every_missing_block(resnet18_state_dict):
    with pytest.raises(ConversionError) as info:
        convert_resnet(resnet18_state_dict, 34)
    message = str(info.value)
    for key in ("layer1.2.conv1.weight", "layer2.3.bn2.running_mean", "layer4.2.conv2.weight"):
        assert key in message
    # layer1.2, layer2.2-3, layer3.2-5, layer4.2: 8 blocks x (2 convs + 2 BNs x 4) = 80 keys
    assert len(info.value.problems) == 80


def test_classifier_width_is_checked_and_configurable(resnet18_state_dict):
    sd = dict(resnet18_state_dict)
    sd["fc.weight"] = np.zeros((10, 512), np.float32)
    sd["fc.bias"] = np.zeros((10,), np.float32)
    with pytest.raises(ConversionError, match=r"params/fc/kernel' has shape \(512, 10\)"):
        convert_resnet(sd, 18)
    assert convert_resnet(sd, 18, num_classes=10)["params"]["fc"]["kernel"].shape == (512, 10)
    headless = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    assert "fc" not in convert_resnet(headless, 18, num_classes=None)["params"]


def test_dtype_and_bad_arguments():
    x = jnp.zeros((1, 32, 32, 3))
    out, variables = jax.eval_shape(
        lambda: ResNet(18, dtype=jnp.bfloat16).init_with_output(jax.random.key(0), x)
    )
    assert out.dtype == jnp.bfloat16
    assert variables["params"]["conv1"]["kernel"].dtype == jnp.float32
    with pytest.raises(ValueError, match="depth"):
        ResNet(20).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="pooling"):
        ResNet(18, num_classes=None, pooling="sum").init(jax.random.key(0), x)
