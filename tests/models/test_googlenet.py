"""tlx's GoogLeNet against torchvision's googlenet, via the weight converter.

Models run eagerly (no jit): the variants below share their primitives, so after the first run
each further one costs seconds, where every jit would compile the whole network again.
"""

from __future__ import annotations

import copy

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from tests.models.equivalence import FLOAT32_EPS  # noqa: E402
from tests.models.equivalence import assert_close as _assert_close  # noqa: E402
from tests.models.equivalence import torch_state_dict as _state_dict  # noqa: E402
from tlx.models.googlenet import (  # noqa: E402
    GOOGLENET_ENDPOINTS,
    GoogLeNet,
    InceptionAux,
    adaptive_avg_pool,
    googlenet_param_groups,
    max_pool_ceil,
)
from tlx.transfer.groups import assign_groups  # noqa: E402
from tlx.tree import flatten  # noqa: E402
from tlx.weights.rules import ConversionError, transpose  # noqa: E402
from tlx.weights.torchvision_googlenet import convert_googlenet  # noqa: E402

F = torch.nn.functional
INCEPTIONS = [n.removesuffix("_out") for n in GOOGLENET_ENDPOINTS if n.startswith("inception")]
# torchvision's wiring, written out here rather than imported so that the test checks ours.
AUX_BRANCHES = {"inception4a": "aux1", "inception4d": "aux2"}


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def _nchw(x) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(np.asarray(x), (0, 3, 1, 2)))


def _sub(variables: dict, name: str) -> dict:
    return {c: tree[name] for c, tree in variables.items()}


@pytest.fixture(scope="module")
def torch_model():
    """Random weights; BN statistics measured on random data (so activations stay O(1) through
    all 57 convs instead of fading to the biases) and then perturbed, so that they matter."""
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: one batch gives its statistics exactly
        model.train()(torch.randn(4, 3, 64, 64))
        for bn in bns:
            bn.momentum = 0.1
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.5, 2.0))
            bn.running_mean.add_(0.2 * bn.running_var.sqrt() * torch.randn_like(bn.running_var))
    return model.eval()


@pytest.fixture(scope="module")
def variables(torch_model):
    return convert_googlenet(_state_dict(torch_model))


def _torch_run(model, x_nchw: np.ndarray):
    """Logits, every endpoint's reference (forward hooks on the same-named modules) and, in eval,
    the aux heads applied to the inception4a / 4d outputs they branch off."""
    outputs, hooks = {}, []
    for name in ("maxpool2", *INCEPTIONS):
        hook = lambda _m, _i, out, name=name: outputs.__setitem__(name, out)  # noqa: E731
        hooks.append(getattr(model, name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(x_nchw)).numpy()
            aux = {a: getattr(model, a)(outputs[b]).numpy() for b, a in AUX_BRANCHES.items()}
    finally:
        for h in hooks:
            h.remove()
    return logits, {k: v.numpy() for k, v in outputs.items()}, aux


@pytest.mark.parametrize("size,transform_input", [(64, False), (67, False), (67, True)])
def test_logits_endpoints_and_aux_heads_match_torchvision(
    torch_model, variables, size, transform_input
):
    """67 makes ceil-mode pooling round up (34 -> 17 after maxpool1, where floor gives 16)."""
    x = np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32)
    torch_model.transform_input = transform_input
    try:
        expected, endpoints, expected_aux = _torch_run(torch_model, x)
    finally:
        torch_model.transform_input = False
    model = GoogLeNet(aux_logits=True, transform_input=transform_input)
    logits, state = model.apply(variables, jnp.asarray(_nhwc(x)), mutable=["intermediates"])
    ours = state["intermediates"]
    assert list(ours) == list(GOOGLENET_ENDPOINTS)
    for name in GOOGLENET_ENDPOINTS:
        (value,) = ours[name]
        _assert_close(_nchw(value), endpoints[name.removesuffix("_out")])
    _assert_close(logits, expected)
    # Eval returns logits only; our aux heads on our block outputs vs torchvision's on its own.
    for block, aux in AUX_BRANCHES.items():
        (feature_map,) = ours[f"{block}_out"]
        _assert_close(
            InceptionAux(1000).apply(_sub(variables, aux), feature_map), expected_aux[aux]
        )


def test_aux_fc1_flatten_order_is_permuted(torch_model, variables):
    """torchvision flattens (C, H, W), tlx (H, W, C): the converted fc1 must agree with torch on
    a 14x14 map (224x224 inputs), and a plain transpose of fc1 must not."""
    x = np.random.default_rng(4).standard_normal((2, 512, 14, 14)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model.aux1(torch.from_numpy(x)).numpy()
    aux_vars = _sub(variables, "aux1")
    _assert_close(InceptionAux(1000).apply(aux_vars, jnp.asarray(_nhwc(x))), expected)

    naive = copy.deepcopy(jax.tree.map(np.asarray, aux_vars))
    naive["params"]["fc1"]["kernel"] = transpose(torch_model.aux1.fc1.weight.detach().numpy())
    wrong = np.asarray(InceptionAux(1000).apply(naive, jnp.asarray(_nhwc(x))))
    assert np.max(np.abs(wrong - expected)) > 100 * 1e-4 * max(1.0, np.max(np.abs(expected)))


def _running_average_batchnorm(next_fun, args, kwargs, context):
    """Every BatchNorm normalises with its running statistics even when train=True."""
    if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
        kwargs = {**kwargs, "use_running_average": True}
    return next_fun(*args, **kwargs)


def test_train_mode_returns_logits_aux2_aux1_like_torchvision(torch_model, variables):
    """train=True returns (logits, aux2, aux1), torchvision's order and values. Dropout is off and
    BatchNorm uses running statistics on both sides, which keeps this test cheap: it reuses the
    eval-mode BatchNorm computations compiled above (batch statistics are flax's own)."""
    x = np.random.default_rng(5).standard_normal((2, 3, 64, 64)).astype(np.float32)
    reference = copy.deepcopy(torch_model).train()
    reference.dropout.p = reference.aux1.dropout.p = reference.aux2.dropout.p = 0.0
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))
    model = GoogLeNet(aux_logits=True, dropout=0.0, aux_dropout=0.0)
    with nn.intercept_methods(_running_average_batchnorm):
        got = model.apply(variables, jnp.asarray(_nhwc(x)), train=True)
    assert len(got) == 3
    for ours, theirs in zip(got, (expected.logits, expected.aux_logits2, expected.aux_logits1)):
        _assert_close(ours, theirs.numpy())
    assert np.max(np.abs(expected.aux_logits1.numpy() - expected.aux_logits2.numpy())) > 1e-2


def test_pooled_features_match_torchvision(torch_model, variables):
    x = np.random.default_rng(6).standard_normal((2, 3, 64, 64)).astype(np.float32)
    _, endpoints, _ = _torch_run(torch_model, x)
    last = torch.from_numpy(endpoints["inception5b"])
    heads = ("fc", "aux1", "aux2")
    backbone = {c: {k: v for k, v in t.items() if k not in heads} for c, t in variables.items()}
    x_nhwc = jnp.asarray(_nhwc(x))
    avg = GoogLeNet(num_classes=None).apply(backbone, x_nhwc)
    assert avg.shape == (2, 1024)
    _assert_close(avg, torch_model.avgpool(last).flatten(1).numpy())
    peak = GoogLeNet(num_classes=None, pooling="max").apply(backbone, x_nhwc)
    _assert_close(peak, last.amax(dim=(2, 3)).numpy())
    fmap = GoogLeNet(num_classes=None, pooling=None).apply(backbone, x_nhwc)
    assert fmap.shape == (2, 2, 2, 1024)
    _assert_close(_nchw(fmap), endpoints["inception5b"])


@pytest.mark.parametrize(
    "size,kernel,stride,padding",
    [(32, 3, 2, 0), (34, 3, 2, 0), (17, 3, 2, 0), (8, 3, 2, 0), (7, 2, 2, 0), (5, 2, 2, 1),
     (6, 3, 2, 1), (9, 3, 1, 1), (1, 2, 2, 0)],
)  # fmt: skip
def test_max_pool_ceil_matches_torch(size, kernel, stride, padding):
    """(5, 2, 2, 1) is the case where torch drops a window starting in the right padding."""
    x = np.random.default_rng(size).standard_normal((2, 3, size, size + 1)).astype(np.float32)
    expected = F.max_pool2d(torch.from_numpy(x), kernel, stride, padding, ceil_mode=True)
    got = max_pool_ceil(jnp.asarray(_nhwc(x)), kernel, stride, padding)
    np.testing.assert_array_equal(_nchw(got), expected.numpy())


@pytest.mark.parametrize("size", [1, 2, 4, 5, 6, 7, 14])
def test_adaptive_avg_pool_matches_torch(size):
    x = np.random.default_rng(size).standard_normal((2, 3, size, size + 3)).astype(np.float32)
    expected = F.adaptive_avg_pool2d(torch.from_numpy(x), (4, 4)).numpy()
    got = adaptive_avg_pool(jnp.asarray(_nhwc(x)), 4)
    # Means of at most 20 values, summed in another order than torch's: measured <= 1.4 ulps.
    _assert_close(_nchw(got), expected, rtol=16 * FLOAT32_EPS)


def _init_shapes(**kwargs) -> dict:
    model = GoogLeNet(**kwargs)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))


@pytest.mark.parametrize("aux_logits", [True, False])
def test_converted_tree_matches_init(torch_model, variables, aux_logits):
    converted = variables if aux_logits else convert_googlenet(_state_dict(torch_model), False)
    init = _init_shapes(aux_logits=aux_logits)
    for collection in ("params", "batch_stats"):
        want = {k: v.shape for k, v in flatten(init[collection]).items()}
        got = {k: v.shape for k, v in flatten(converted[collection]).items()}
        assert got == want, collection
    assert ("aux1" in converted["params"]) is aux_logits


@pytest.mark.parametrize("aux_logits", [True, False])
def test_param_groups_cover_every_param_once(aux_logits):
    paths = list(flatten(_init_shapes(aux_logits=aux_logits)["params"]))
    groups = googlenet_param_groups(aux_logits=aux_logits)
    assignment = assign_groups(paths, groups)
    assert set(assignment) == set(paths)
    names = [name for name, _ in groups]
    blocks = list(INCEPTIONS)
    if aux_logits:
        blocks.insert(blocks.index("inception4a") + 1, "aux1")
        blocks.insert(blocks.index("inception4d") + 1, "aux2")
    assert names == ["stem", *blocks, "head"]
    assert assignment["conv1/conv/kernel"] == "stem"
    assert assignment["conv3/bn/scale"] == "stem"
    assert assignment["inception3a/branch4_1/conv/kernel"] == "inception3a"
    assert assignment["inception5b/branch3_1/bn/bias"] == "inception5b"
    assert assignment["fc/kernel"] == "head"
    if aux_logits:
        assert assignment["aux2/fc1/kernel"] == "aux2"


def test_conversion_errors_name_missing_extra_and_misshaped_keys(torch_model):
    sd = _state_dict(torch_model)
    missing = dict(sd)
    del missing["inception4b.branch2.1.bn.running_var"]
    with pytest.raises(ConversionError, match=r"inception4b/branch2_1/bn/var"):
        convert_googlenet(missing)

    extra = dict(sd)
    extra["inception6a.branch1.conv.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ConversionError, match=r"inception6a\.branch1\.conv\.weight"):
        convert_googlenet(extra)

    misshaped = dict(sd)
    misshaped["inception3a.branch3.1.conv.weight"] = np.zeros((32, 16, 5, 5), np.float32)
    with pytest.raises(ConversionError, match=r"inception3a/branch3_1/conv/kernel"):
        convert_googlenet(misshaped)  # a real 5x5 kernel: torchvision's branch is 3x3

    no_aux = {k: v for k, v in sd.items() if not k.startswith("aux")}
    with pytest.raises(ConversionError) as info:
        convert_googlenet(no_aux, aux_logits=True)
    assert any("aux1/fc1/kernel" in p for p in info.value.problems)
    assert any("aux2/conv/bn/mean" in p for p in info.value.problems)
    assert "aux1" not in convert_googlenet(no_aux, aux_logits=False)["params"]


def test_aux_logits_need_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        _init_shapes(num_classes=None, aux_logits=True)
