"""tlx's MobileNetV3-Large against torchvision's mobilenet_v3_large in eval mode: random weights
with randomised BatchNorm statistics converted by the rule table; logits and the endpoints the
detectors read.

Tolerance: outputs are compared relative to their scale (max |reference|). The network is ~50
layers of float32 sums whose order differs between the frameworks and CPUs (AVX2, AVX-512, AMX),
~1e-6 of the scale per layer; 1e-4 of the scale bounds that, while a wrong layout, activation or
epsilon is off by 1e-2 or more."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from tests.models.equivalence import randomize_batchnorm  # noqa: E402
from tlx.models.mobilenet_v3 import MobileNetV3, mobilenet_v3_param_groups  # noqa: E402
from tlx.transfer.groups import assign_groups  # noqa: E402
from tlx.tree import flatten  # noqa: E402
from tlx.weights.rules import ConversionError  # noqa: E402
from tlx.weights.torchvision_mobilenet_v3 import convert_mobilenet_v3  # noqa: E402


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_large(weights=None)
    randomize_batchnorm(model)
    return model.eval()


def close(mine, theirs, name):
    scale = np.abs(theirs).max()
    np.testing.assert_allclose(mine, theirs, atol=1e-4 * scale, err_msg=name)


def test_mobilenet_v3_large_matches_torchvision(reference):
    x = np.random.default_rng(0).normal(size=(2, 3, 96, 96)).astype(np.float32)
    variables = convert_mobilenet_v3(reference.state_dict())
    with torch.no_grad():
        logits = reference(torch.from_numpy(x)).numpy()
        f13 = reference.features[:14](torch.from_numpy(x)).numpy()
        last = reference.features(torch.from_numpy(x)).numpy()
    model = MobileNetV3()
    ours, sown = jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))(
        variables, x.transpose(0, 2, 3, 1)
    )
    close(np.asarray(ours), logits, "logits")
    close(np.asarray(sown["intermediates"]["block_13"][0]), f13.transpose(0, 2, 3, 1), "f13")
    close(np.asarray(sown["intermediates"]["last_conv"][0]), last.transpose(0, 2, 3, 1), "last")
    assert sown["intermediates"]["stage_5"][0].shape == (2, 3, 3, 160)  # stride 32


def test_groups_cover_every_parameter_and_a_bad_file_names_its_keys(reference):
    variables = convert_mobilenet_v3(reference.state_dict())
    group_of = assign_groups(list(flatten(variables["params"])), mobilenet_v3_param_groups())
    assert set(group_of.values()) == {n for n, _ in mobilenet_v3_param_groups()}
    state = dict(reference.state_dict())
    del state["features.4.block.2.fc1.weight"]
    with pytest.raises(ConversionError, match="features_4/se/fc1/kernel"):
        convert_mobilenet_v3(state)
