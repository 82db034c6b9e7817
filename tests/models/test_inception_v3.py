"""tlx's InceptionV3 against torchvision's inception_v3 in eval mode, via the weight converter:
logits, every endpoint, the aux head, transform_input, pooled features, and the conversion's
error reports. Keras' variant is in test_keras_inception_v3.py.

Inputs stay small (batch 2, 75x75 and 107x107, where Mixed_7c is 1x1 and 2x2) because every new
input shape or model variant costs an XLA compile of the whole network.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from tests.models.equivalence import assert_close as _assert_close  # noqa: E402
from tlx.models.inception_v3 import (  # noqa: E402
    INCEPTION_V3_ENDPOINTS,
    InceptionA,
    InceptionAux,
    InceptionV3,
    inception_v3_param_groups,
)
from tlx.transfer.groups import assign_groups  # noqa: E402
from tlx.tree import flatten  # noqa: E402
from tlx.weights.rules import ConversionError  # noqa: E402
from tlx.weights.torchvision_inception import convert_inception_v3  # noqa: E402


def _nhwc(x):
    return np.ascontiguousarray(np.transpose(np.asarray(x), (0, 2, 3, 1)))


def _inputs(size: int, batch: int = 2, seed: int = 0):
    x = np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)
    return x, _nhwc(x)  # NCHW for torch, NHWC for flax


class Reference:
    """One random torchvision inception_v3 (aux head included), its state dict and conversion."""

    def __init__(self):
        torch.manual_seed(0)
        # init_weights=False skips torchvision's slow truncated-normal init: every weight is
        # overwritten below anyway, He-scaled so activations stay O(1) through 94 convs.
        self.model = torchvision.models.inception_v3(
            weights=None, aux_logits=True, init_weights=False
        )
        with torch.no_grad():
            for m in self.model.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.weight.normal_(0.0, (2.0 / m.weight[0].numel()) ** 0.5)
                elif isinstance(m, torch.nn.Linear):
                    m.weight.normal_(0.0, m.in_features**-0.5)
                    m.bias.normal_(0.0, 0.1)
                elif isinstance(m, torch.nn.BatchNorm2d):  # random statistics, so they matter
                    m.running_mean.normal_(0.0, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.2)
        self.model.eval()
        self.state_dict = {k: v.detach().numpy() for k, v in self.model.state_dict().items()}
        self.variables = jax.device_put(convert_inception_v3(self.state_dict))

    @torch.no_grad()
    def endpoints(self, x_nchw, transform_input: bool = False) -> dict[str, np.ndarray]:
        """torchvision's output (NHWC) of the child module behind every tlx endpoint, and the
        logits; forward hooks, so torch's own forward runs unchanged."""
        out: dict[str, np.ndarray] = {}

        def record(endpoint):
            return lambda _module, _inputs, output: out.__setitem__(endpoint, _nhwc(output))

        hooks = [
            module.register_forward_hook(record(endpoint))
            for name, module in self.model.named_children()
            for endpoint in (name, f"{name}_out")
            if endpoint in INCEPTION_V3_ENDPOINTS
        ]
        self.model.transform_input = transform_input
        try:
            out["logits"] = self.model(torch.from_numpy(x_nchw)).numpy()
        finally:
            self.model.transform_input = False
            for hook in hooks:
                hook.remove()
        return out


@pytest.fixture(scope="module")
def ref():
    return Reference()


@pytest.fixture(scope="module")
def at_107(ref):
    """torch's endpoints and tlx's outputs at 107x107, where Mixed_7c is 2x2: logits and
    intermediates of the classifier, and the three poolings of num_classes=None. One jit for all:
    XLA shares the common trunk, so this compiles about one network, not four."""
    x_nchw, x_nhwc = _inputs(107)

    def outputs(v, x):
        logits, state = InceptionV3(aux_logits=True).apply(v, x, mutable=["intermediates"])
        pooled = {
            str(p): InceptionV3(num_classes=None, pooling=p).apply(v, x)  # fc params unused
            for p in ("avg", "max", None)
        }
        return logits, state["intermediates"], pooled

    return ref.endpoints(x_nchw), *jax.jit(outputs)(ref.variables, jnp.asarray(x_nhwc))


def test_logits_match_torchvision_at_107(at_107):
    theirs, logits, _, _ = at_107
    assert logits.shape == (2, 1000)
    _assert_close(logits, theirs["logits"])


def test_every_endpoint_matches_torchvision(at_107):
    theirs, _, intermediates, _ = at_107
    assert set(intermediates) == set(INCEPTION_V3_ENDPOINTS)
    assert set(theirs) == {*INCEPTION_V3_ENDPOINTS, "logits"}
    for name in INCEPTION_V3_ENDPOINTS:
        (ours,) = intermediates[name]
        _assert_close(ours, theirs[name])
    assert intermediates["Mixed_6e_out"][0].shape == (2, 5, 5, 768)
    assert intermediates["Mixed_7c_out"][0].shape == (2, 2, 2, 2048)


def test_transform_input_matches_torchvision_at_75(ref):
    """The smallest input torchvision allows, with the Google checkpoint's input remapping."""
    x_nchw, x_nhwc = _inputs(75, seed=1)
    theirs = ref.endpoints(x_nchw, transform_input=True)["logits"]
    plain = ref.endpoints(x_nchw)["logits"]
    ours = jax.jit(lambda v, x: InceptionV3(transform_input=True).apply(v, x))(
        ref.variables, jnp.asarray(x_nhwc)
    )
    _assert_close(ours, theirs)
    assert np.max(np.abs(theirs - plain)) > 1e-2  # the remapping changes the logits


def test_aux_head_matches_torchvision_on_mixed_6e(ref):
    """torch's AuxLogits runs only in train mode (where BN batch statistics and dropout make
    outputs incomparable), so both heads run in eval on torch's own Mixed_6e map at 299x299."""
    x_nchw, _ = _inputs(299, batch=1, seed=2)
    with torch.no_grad():
        feats = ref.endpoints(x_nchw)["Mixed_6e_out"]
        assert feats.shape == (1, 17, 17, 768)
        theirs = ref.model.AuxLogits(torch.from_numpy(np.transpose(feats, (0, 3, 1, 2)))).numpy()
    aux_vars = {c: ref.variables[c]["AuxLogits"] for c in ("params", "batch_stats")}
    ours = jax.jit(lambda v, x: InceptionAux(1000).apply(v, x))(aux_vars, jnp.asarray(feats))
    _assert_close(ours, theirs)


def test_train_mode_returns_logits_and_aux_logits(ref):
    """Like torchvision's InceptionOutputs (shapes only: jax.eval_shape traces, computes nothing;
    eval mode's plain logits are checked above)."""
    logits, aux = jax.eval_shape(
        lambda v, x: InceptionV3(aux_logits=True).apply(
            v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)}
        )[0],
        ref.variables,
        jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.float32),
    )
    assert logits.shape == aux.shape == (2, 1000)


def test_pooled_features_match_torchvision(at_107):
    """num_classes=None: avg / max pooling of Mixed_7c (2x2 here, so they differ) or the map."""
    theirs, _, _, pooled = at_107
    mixed_7c = theirs["Mixed_7c_out"]
    _assert_close(pooled["None"], mixed_7c)
    _assert_close(pooled["avg"], mixed_7c.mean(axis=(1, 2)))
    _assert_close(pooled["max"], mixed_7c.max(axis=(1, 2)))
    assert pooled["avg"].shape == pooled["max"].shape == (2, 2048)
    assert np.max(np.abs(pooled["avg"] - pooled["max"])) > 1e-2


def test_average_pool_padding_rule_is_torchvision_s(ref):
    """Mixed_5b alone on an 8x8 map: counting the padding (torch's F.avg_pool2d default) matches
    torchvision; Keras' rule (padding excluded) changes the border pixels measurably."""
    x = np.random.default_rng(3).standard_normal((2, 192, 8, 8)).astype(np.float32) + 1.0
    with torch.no_grad():
        theirs = _nhwc(ref.model.Mixed_5b(torch.from_numpy(x)))
    block_vars = {c: ref.variables[c]["Mixed_5b"] for c in ("params", "batch_stats")}
    outs = {
        pad: InceptionA(32, count_include_pad=pad).apply(block_vars, jnp.asarray(_nhwc(x)))
        for pad in (True, False)
    }
    _assert_close(outs[True], theirs)
    diff = np.abs(np.asarray(outs[False]) - theirs)
    assert diff.max() > 1e-2
    assert diff[:, 1:-1, 1:-1].max() <= 1e-4  # only where the 3x3 window meets the padding


@functools.cache
def _init_shapes(**kwargs):
    model = InceptionV3(**kwargs)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 75, 75, 3))))


@pytest.mark.parametrize("aux", [True, False])
def test_converted_tree_matches_init(ref, aux):
    """Same paths and shapes as a fresh init (which builds the aux head even at 75x75)."""
    variables = convert_inception_v3(ref.state_dict, aux_logits=aux)
    init = _init_shapes(aux_logits=aux)
    for collection in ("params", "batch_stats"):
        want = {k: v.shape for k, v in flatten(init[collection]).items()}
        got = {k: v.shape for k, v in flatten(variables[collection]).items()}
        assert got == want, collection
    assert ("AuxLogits" in variables["params"]) is aux
    assert len(flatten(variables["batch_stats"])) == 2 * (94 + 2 * aux)  # mean, var per BN


@pytest.mark.parametrize("aux", [True, False])
def test_param_groups_cover_every_param_once(aux):
    paths = list(flatten(_init_shapes(aux_logits=aux)["params"]))
    groups = inception_v3_param_groups(aux_logits=aux)
    assignment = assign_groups(paths, groups)
    assert set(assignment) == set(paths)
    mixed = [
        f"Mixed_{b}" for b in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")
    ]
    names = ["stem", *mixed[:8], *(["aux"] if aux else []), *mixed[8:], "head"]
    assert [name for name, _ in groups] == names
    assert assignment["Conv2d_1a_3x3/conv/kernel"] == "stem"
    assert assignment["Conv2d_4a_3x3/bn/scale"] == "stem"
    assert assignment["Mixed_6e/branch7x7dbl_5/conv/kernel"] == "Mixed_6e"
    assert assignment["Mixed_7c/branch_pool/bn/bias"] == "Mixed_7c"
    assert assignment["fc/kernel"] == "head"
    if aux:
        assert assignment["AuxLogits/fc/kernel"] == "aux"
        assert assignment["AuxLogits/conv1/conv/kernel"] == "aux"


def test_param_groups_without_classifier():
    paths = list(flatten(_init_shapes(num_classes=None)["params"]))
    groups = inception_v3_param_groups(include_top=False)
    assert set(assign_groups(paths, groups).values()) == {name for name, _ in groups}
    assert groups[-1][0] == "Mixed_7c"


def test_missing_extra_and_misshaped_keys_are_all_named(ref):
    sd = dict(ref.state_dict)
    del sd["Mixed_6c.branch7x7dbl_3.bn.running_var"]
    sd["Mixed_6a.branch9x9.conv.weight"] = np.zeros((8, 4, 1, 1), np.float32)
    sd["Mixed_5b.branch5x5_2.conv.weight"] = np.zeros((64, 48, 3, 3), np.float32)
    sd["fc.extra"] = np.zeros(3, np.float32)
    with pytest.raises(ConversionError) as err:
        convert_inception_v3(sd)
    text = str(err.value)
    # Unmatched keys are reported first, the shape check only once every key has a rule.
    assert "fc.extra" in text
    del sd["fc.extra"]
    with pytest.raises(ConversionError) as err:
        convert_inception_v3(sd)
    problems = "\n".join(err.value.problems)
    assert "batch_stats/Mixed_6c/branch7x7dbl_3/bn/var" in problems  # missing
    assert "params/Mixed_6a/branch9x9/conv/kernel" in problems  # no such variable
    assert "params/Mixed_5b/branch5x5_2/conv/kernel' has shape (3, 3, 48, 64)" in problems


def test_without_aux_the_aux_tensors_are_dropped_not_required(ref):
    sd = {k: v for k, v in ref.state_dict.items() if not k.startswith("AuxLogits.")}
    assert "AuxLogits" not in convert_inception_v3(sd, aux_logits=False)["params"]
    with pytest.raises(ConversionError, match=r"params/AuxLogits/fc/kernel"):
        convert_inception_v3(sd, aux_logits=True)
