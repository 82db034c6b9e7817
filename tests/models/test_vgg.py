"""tlx's VGG against torchvision's vgg16 / vgg19 / vgg16_bn / vgg19_bn in eval mode, via the
weight converter: logits, every endpoint, pooled features, and the pieces that make them agree
(torch's adaptive average pool, the (C, H, W) -> (H, W, C) reordering of fc6)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from tests.models.equivalence import FLOAT32_EPS  # noqa: E402
from tests.models.equivalence import assert_close as _assert_close  # noqa: E402
from tlx.models.vgg import (  # noqa: E402
    VGG,
    VGG_ENDPOINTS,
    OutInDense,
    adaptive_avg_pool,
    vgg_param_groups,
)
from tlx.transfer.groups import assign_groups  # noqa: E402
from tlx.tree import flatten  # noqa: E402
from tlx.weights.rules import ConversionError  # noqa: E402
from tlx.weights.torchvision_vgg import convert_vgg, fc6_kernel  # noqa: E402

VARIANTS = {
    "vgg16": (16, False),
    "vgg19": (19, False),
    "vgg16_bn": (16, True),
    "vgg19_bn": (19, True),
}


def _inputs(size: int, batch: int = 2, seed: int = 0):
    x = np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)
    return x, np.transpose(x, (0, 2, 3, 1))  # NCHW for torch, NHWC for flax


@pytest.fixture(scope="module")
def shared_classifier():
    """torchvision's classifier (fc6, fc7, head: 120M of VGG's 138M weights), built once and
    shared by the four variants, whose only differences are in `features`."""
    torch.manual_seed(1)
    with torch.device("meta"):
        classifier = torchvision.models.vgg16(weights=None).classifier
    classifier.to_empty(device="cpu")
    with torch.no_grad():
        for m in classifier:
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.0, 0.01)  # torchvision's init
                m.bias.normal_(0.0, 0.1)
    return classifier.eval()


class Reference:
    """One random torchvision model, its converted variables and a jitted tlx forward."""

    def __init__(self, name: str, classifier):
        torch.manual_seed(0)
        self.name = name
        self.depth, self.batch_norm = VARIANTS[name]
        with torch.device("meta"):
            self.model = getattr(torchvision.models, name)(weights=None)
        self.model.features.to_empty(device="cpu")
        self.model.classifier = classifier
        with torch.no_grad():  # torchvision's conv init; nonzero biases and BN statistics
            for m in self.model.features:
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    m.bias.normal_(0.0, 0.1)
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_(0.0, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.2)
                    m.num_batches_tracked.zero_()
        self.model.eval()
        self.state_dict = {k: v.detach().numpy() for k, v in self.model.state_dict().items()}
        self.variables = jax.device_put(convert_vgg(self.state_dict, self.depth, self.batch_norm))
        self.apply = jax.jit(lambda v, x: self.module().apply(v, x, mutable=["intermediates"]))

    def module(self, **kwargs) -> VGG:
        return VGG(depth=self.depth, batch_norm=self.batch_norm, **kwargs)

    @torch.no_grad()
    def torch_endpoints(self, x_nchw) -> dict[str, np.ndarray]:
        """torchvision's output at every tlx endpoint and at the logits."""
        out, block = {}, 1
        h = torch.from_numpy(x_nchw)
        for layer in self.model.features:
            h = layer(h)
            if isinstance(layer, torch.nn.MaxPool2d):
                out[f"block{block}"] = np.transpose(h.numpy(), (0, 2, 3, 1))  # NHWC copy
                block += 1
        h = torch.flatten(self.model.avgpool(h), 1)
        for i, layer in enumerate(self.model.classifier):
            h = layer(h)
            if i in (1, 4):  # after fc6's / fc7's ReLU
                out["fc6_relu" if i == 1 else "fc7_relu"] = h.numpy().copy()
        out["logits"] = h.numpy().copy()
        return out


@pytest.fixture(scope="module", params=list(VARIANTS))
def ref(request, shared_classifier):
    return Reference(request.param, shared_classifier)


@pytest.fixture(scope="module")
def at_32(ref):
    """(torch endpoints, tlx logits, tlx intermediates) for 32x32 inputs: a 1x1 block5 map that
    torch's adaptive pool replicates to 7x7."""
    x_nchw, x_nhwc = _inputs(32)
    logits, state = ref.apply(ref.variables, jnp.asarray(x_nhwc))
    return ref.torch_endpoints(x_nchw), logits, state["intermediates"]


def test_logits_match_torchvision_at_32(ref, at_32):
    theirs, logits, _ = at_32
    assert logits.shape == (2, 1000)
    _assert_close(logits, theirs["logits"])


def test_endpoints_match_torchvision_block_by_block(ref, at_32):
    theirs, _, intermediates = at_32
    assert set(intermediates) == set(VGG_ENDPOINTS)
    for name in VGG_ENDPOINTS:
        (ours,) = intermediates[name]
        _assert_close(ours, theirs[name])
    assert intermediates["block5"][0].shape == (2, 1, 1, 512)


def test_logits_match_torchvision_at_64(ref):
    """64x64 inputs leave a 2x2 block5 map, which the adaptive pool really averages (bin 3 spans
    both rows)."""
    x_nchw, x_nhwc = _inputs(64, seed=1)
    theirs = ref.torch_endpoints(x_nchw)["logits"]
    logits, _ = ref.apply(ref.variables, jnp.asarray(x_nhwc))
    _assert_close(logits, theirs)


@pytest.mark.parametrize("ref", ["vgg16"], indirect=True)
def test_logits_need_the_fc6_permutation(ref):
    """The same weights with fc6 as torch stores it (its (C, H, W) input order) are far off: the
    permutation is what makes the logits agree (the classifier is shared by all variants)."""
    x_nchw, x_nhwc = _inputs(64, seed=1)
    theirs = ref.torch_endpoints(x_nchw)["logits"]
    params = dict(ref.variables["params"])
    params["fc6"] = {**params["fc6"], "kernel": np.asarray(ref.state_dict["classifier.0.weight"])}
    wrong, _ = ref.apply({**ref.variables, "params": params}, jnp.asarray(x_nhwc))
    tol = 1e-4 * max(1.0, float(np.max(np.abs(theirs))))
    assert float(np.max(np.abs(np.asarray(wrong) - theirs))) > 100 * tol


@pytest.mark.parametrize("ref", ["vgg19_bn"], indirect=True)
def test_pooled_features_match_torchvision(ref):
    """num_classes=None: block5's output (Keras include_top=False), pooled globally or not. One
    variant is enough: the endpoint tests prove every variant's block5, and this tail is shared."""
    x_nchw, x_nhwc = _inputs(64, seed=2)
    with torch.no_grad():
        feats = ref.model.features(torch.from_numpy(x_nchw))
    variables = {**ref.variables, "params": dict(ref.variables["params"])}
    for name in ("fc6", "fc7", "head"):
        variables["params"].pop(name)
    poolings = ("avg", "max", None)
    expected = (
        feats.mean(dim=(2, 3)).numpy(),
        feats.amax(dim=(2, 3)).numpy(),
        feats.permute(0, 2, 3, 1).numpy(),
    )
    run = jax.jit(  # one compilation; XLA shares the three identical conv stacks
        lambda v, x: [ref.module(num_classes=None, pooling=p).apply(v, x) for p in poolings]
    )
    for pooling, got, want in zip(poolings, run(variables, jnp.asarray(x_nhwc)), expected):
        assert got.shape == want.shape, pooling
        _assert_close(got, want)


def test_converted_tree_matches_init(ref):
    init = jax.eval_shape(lambda: ref.module().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    assert set(init) == set(ref.variables)
    assert ("batch_stats" in init) == ref.batch_norm
    for collection in init:
        want = {k: v.shape for k, v in flatten(init[collection]).items()}
        got = {k: v.shape for k, v in flatten(ref.variables[collection]).items()}
        assert got == want, collection


@pytest.mark.parametrize("ref", ["vgg16_bn"], indirect=True)
def test_missing_and_extra_keys_are_reported_together(ref):
    # Without the classifier (converting fc6 is the slow part): its keys are then missing too.
    sd = {k: v for k, v in ref.state_dict.items() if not k.startswith("classifier.")}
    first_block2_conv = 5 if not ref.batch_norm else 7  # conv, [bn,] relu, conv, [bn,] relu, pool
    del sd[f"features.{first_block2_conv}.weight"]
    sd["features.99.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ConversionError) as info:
        convert_vgg(sd, ref.depth, ref.batch_norm)
    message = str(info.value)
    assert f"features.{first_block2_conv}.weight" in message
    assert "block2_conv1/kernel" in message
    assert "features.99.weight" in message
    assert "classifier.0.weight" in message
    # and a vgg16 checkpoint is no vgg19 one: block3_conv4 etc. are missing
    sd = {k: v for k, v in ref.state_dict.items() if not k.startswith("classifier.")}
    with pytest.raises(ConversionError, match="block5_conv4"):
        convert_vgg(sd, 19, ref.batch_norm)


@pytest.mark.parametrize("ref", ["vgg16_bn"], indirect=True)
def test_misshaped_tensor_is_named(ref):
    sd = dict(ref.state_dict, **{"classifier.3.bias": np.zeros(7, np.float32)})
    with pytest.raises(ConversionError, match=r"fc7/bias.*\(7,\)"):
        convert_vgg(sd, ref.depth, ref.batch_norm)


@pytest.mark.parametrize("ref", ["vgg16_bn"], indirect=True)
def test_logits_match_torchvision_at_224(ref):
    """The standard size, where block5 is already 7x7 and the adaptive pool is the identity."""
    x_nchw, x_nhwc = _inputs(224, batch=1, seed=3)
    theirs = ref.torch_endpoints(x_nchw)["logits"]
    logits, _ = ref.apply(ref.variables, jnp.asarray(x_nhwc))
    _assert_close(logits, theirs)


@pytest.mark.parametrize("h,w", [(1, 1), (2, 2), (3, 5), (7, 7), (9, 4), (14, 14), (13, 20)])
def test_adaptive_avg_pool_matches_torch(h, w):
    x = np.random.default_rng(h * 100 + w).standard_normal((2, 3, h, w)).astype(np.float32)
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), (7, 7)).numpy()
    got = adaptive_avg_pool(jnp.asarray(np.transpose(x, (0, 2, 3, 1))))
    # Means of at most 12 values, summed in another order than torch's: measured <= 1.3 ulps.
    _assert_close(got, np.transpose(expected, (0, 2, 3, 1)), rtol=16 * FLOAT32_EPS)


def test_fc6_kernel_reorders_the_flatten():
    """(C, H, W)-flattened input @ torch weight.T == (H, W, C)-flattened input @ fc6_kernel.T."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((5, 4 * 7 * 7)).astype(np.float32)
    fmap = rng.standard_normal((2, 4, 7, 7)).astype(np.float32)  # NCHW
    expected = fmap.reshape(2, -1) @ weight.T
    kernel = fc6_kernel(weight)
    assert kernel.shape == weight.shape  # [out, in], as OutInDense keeps it
    got = np.transpose(fmap, (0, 2, 3, 1)).reshape(2, -1) @ kernel.T
    # 196-term dot products summed in another order: measured 7 ulps, allowed ~84 (the wrong order
    # of the flatten below is 1.5e7 ulps off).
    _assert_close(got, expected, rtol=1e-5)
    assert not np.allclose(np.transpose(fmap, (0, 2, 3, 1)).reshape(2, -1) @ weight.T, expected)
    with pytest.raises(ValueError):
        fc6_kernel(np.zeros((5, 50), np.float32))


@pytest.mark.parametrize("depth", [16, 19])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_param_groups_cover_every_param_once(depth, batch_norm):
    for include_top in (True, False):
        model = VGG(depth=depth, batch_norm=batch_norm, num_classes=1000 if include_top else None)
        params = jax.eval_shape(
            lambda m=model: m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
        )
        paths = list(flatten(params["params"]))
        groups = vgg_param_groups(include_top=include_top)
        assignment = assign_groups(paths, groups)
        assert set(assignment) == set(paths)
        top = ["fc6", "fc7", "head"] if include_top else []
        assert [name for name, _ in groups] == [f"block{b}" for b in range(1, 6)] + top
        assert assignment["block1_conv1/kernel"] == "block1"
        assert assignment[f"block5_conv{3 if depth == 16 else 4}/bias"] == "block5"
        if batch_norm:
            assert assignment["block3_conv2_bn/scale"] == "block3"
        if include_top:
            assert assignment["fc6/kernel"] == "fc6"
            assert assignment["fc7/bias"] == "fc7"
            assert assignment["head/kernel"] == "head"


@pytest.mark.parametrize("ref", ["vgg16"], indirect=True)
def test_dropout_only_in_training(ref):
    """Eval mode is deterministic (the logits tests match torch's eval); train mode drops."""
    x = jnp.asarray(_inputs(32, seed=4)[1])
    train = jax.jit(lambda v, x, k: ref.module().apply(v, x, train=True, rngs={"dropout": k}))
    a, b = train(ref.variables, x, jax.random.key(1)), train(ref.variables, x, jax.random.key(2))
    assert not np.allclose(np.asarray(a), np.asarray(b))


def test_bad_depth_and_pooling_are_refused():
    x = jnp.zeros((1, 32, 32, 3))
    with pytest.raises(ValueError, match="depth"):
        jax.eval_shape(lambda: VGG(depth=17).init(jax.random.key(0), x))
    with pytest.raises(ValueError, match="pooling"):
        jax.eval_shape(lambda: VGG(num_classes=None, pooling="sum").init(jax.random.key(0), x))
    with pytest.raises(ValueError, match="depth"):
        convert_vgg({}, depth=13)


def test_out_in_dense_is_a_dense_with_the_kernel_transposed():
    """fc6 / fc7 keep torch's [out, in] kernel layout (faster to stream on the CPU); the layer
    must compute what flax's Dense does with the transposed kernel, and draw LeCun-normal weights
    by the input axis (the last one here)."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 256)), jnp.float32)
    layer = OutInDense(512)
    variables = layer.init(jax.random.key(1), x)
    kernel, bias = variables["params"]["kernel"], variables["params"]["bias"]
    assert kernel.shape == (512, 256) and bias.shape == (512,)
    assert float(jnp.std(kernel)) == pytest.approx(1 / np.sqrt(256), rel=0.1)  # fan-in 256
    bias = jnp.arange(512, dtype=jnp.float32) / 512
    got = layer.apply({"params": {"kernel": kernel, "bias": bias}}, x)
    want = nn.Dense(512).apply({"params": {"kernel": kernel.T, "bias": bias}}, x)
    _assert_close(got, want, rtol=1e-5)  # 256-term dots in another order: measured 2 ulps
    half = OutInDense(512, dtype=jnp.bfloat16).apply(
        {"params": {"kernel": kernel, "bias": bias}}, x
    )
    assert half.dtype == jnp.bfloat16
