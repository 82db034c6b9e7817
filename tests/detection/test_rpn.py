"""Faster R-CNN's first stage against torchvision: the feature pyramid, the anchors and the
region proposals, on random weights and features (no COCO detector weights install offline).

Tolerances: the convolutions here sum at most 9 x 32 products of O(1) values, so float32 results
differ between implementations and CPUs by ~1e-6 relative; 1e-4 absolute on O(1) outputs leaves
room for any summation order while a wrong kernel layout or upsampling rule is off by O(1).
Proposal boxes reach 320 px, where float32 spacing is 3e-5 and decoding exponentiates the deltas:
1e-3 px is ~1e-5 relative, while a wrong anchor or a different NMS choice moves a box by pixels."""

from collections import OrderedDict

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402
from torchvision.models.detection.rpn import RegionProposalNetwork  # noqa: E402
from torchvision.models.detection.rpn import RPNHead as TorchRPNHead  # noqa: E402
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool  # noqa: E402

from tlx.detection.anchors import pyramid_anchors  # noqa: E402
from tlx.detection.fpn import FeaturePyramid  # noqa: E402
from tlx.detection.rpn import ProposalSettings, RPNHead, select_proposals  # noqa: E402


def conv(module):
    """A torch Conv2d's weight and bias as flax Conv params (OIHW -> HWIO)."""
    return {
        "kernel": module.weight.detach().numpy().transpose(2, 3, 1, 0),
        "bias": module.bias.detach().numpy(),
    }


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def torch_fpn(in_channels, out_channels, seed):
    torch.manual_seed(seed)
    fpn = torchvision.ops.FeaturePyramidNetwork(in_channels, out_channels, LastLevelMaxPool())
    for p in fpn.parameters():  # torchvision initialises biases to 0: make them count
        torch.nn.init.normal_(p, std=0.2)
    params = {f"inner_{i}": conv(b[0]) for i, b in enumerate(fpn.inner_blocks)}
    params |= {f"layer_{i}": conv(b[0]) for i, b in enumerate(fpn.layer_blocks)}
    return fpn.eval(), {"params": params}


def test_feature_pyramid_matches_torchvision_on_odd_sizes():
    rng = np.random.default_rng(0)
    shapes = [(8, 25, 38), (16, 13, 19), (32, 7, 10)]  # odd sizes: nearest upsampling's rule
    inputs = [rng.normal(size=(2, *s)).astype(np.float32) for s in shapes]
    fpn, variables = torch_fpn([8, 16, 32], 16, seed=0)
    with torch.no_grad():
        theirs = fpn(OrderedDict((str(i), torch.from_numpy(x)) for i, x in enumerate(inputs)))
    ours = FeaturePyramid(16).apply(variables, [x.transpose(0, 2, 3, 1) for x in inputs])
    assert len(ours) == len(theirs) == 4  # three levels and the pooled one
    for mine, (name, reference) in zip(ours, theirs.items()):
        assert mine.shape == nhwc(reference).shape, name
        np.testing.assert_allclose(mine, nhwc(reference), atol=1e-4, err_msg=name)


@pytest.mark.parametrize(
    "sizes,ratios",
    [
        (((32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 3),  # ResNet-50 FPN: one size per level
        (((32, 64, 128, 256, 512),) * 2, ((0.5, 1.0, 2.0),) * 2),  # MobileNetV3 FPN: all five
    ],
)
def test_anchors_match_torchvision(sizes, ratios):
    padded = (224, 320)
    feature_sizes = [(56 // 2**i, 80 // 2**i) for i in range(len(sizes))]
    generator = AnchorGenerator(sizes, ratios)
    images = ImageList(torch.zeros(1, 3, *padded), [(200, 300)])
    features = [torch.zeros(1, 1, *s) for s in feature_sizes]
    theirs = generator(images, features)[0].numpy()
    ours, counts = pyramid_anchors(feature_sizes, padded, sizes, ratios)
    np.testing.assert_array_equal(ours, theirs)
    assert counts == [h * w * len(sizes[0]) * 3 for h, w in feature_sizes]


def test_proposals_are_torchvisions_boxes_in_torchvisions_order():
    rng = np.random.default_rng(1)
    image_sizes = [(200, 296), (224, 240)]  # unpadded sizes inside the padded 224 x 320 batch
    feature_sizes = [(56, 80), (28, 40), (14, 20), (7, 10)]
    features = [rng.normal(size=(2, 16, h, w)).astype(np.float32) for h, w in feature_sizes]
    sizes, ratios = ((32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 4
    torch.manual_seed(1)
    head = TorchRPNHead(16, 3)
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.3)  # spread logits, so the top-k and NMS really choose
    settings = ProposalSettings(pre_nms_top_n=300, post_nms_top_n=200)
    rpn = RegionProposalNetwork(
        AnchorGenerator(sizes, ratios),
        head,
        0.7,
        0.3,
        256,
        0.5,
        dict(training=2000, testing=settings.pre_nms_top_n),
        dict(training=2000, testing=settings.post_nms_top_n),
        settings.nms_threshold,
    ).eval()
    images = ImageList(torch.zeros(2, 3, 224, 320), image_sizes)
    named = OrderedDict((str(i), torch.from_numpy(f)) for i, f in enumerate(features))
    with torch.no_grad():
        theirs, _ = rpn(images, named)

    variables = {
        "params": {
            name: conv(m)
            for name, m in [
                ("conv", head.conv[0][0]),
                ("cls_logits", head.cls_logits),
                ("bbox_pred", head.bbox_pred),
            ]
        }
    }
    logits, deltas = RPNHead(3).apply(variables, [nhwc(torch.from_numpy(f)) for f in features])
    anchors, counts = pyramid_anchors(feature_sizes, (224, 320), sizes, ratios)
    select = jax.jit(
        jax.vmap(lambda lo, de, size: select_proposals(lo, de, anchors, counts, size, settings))
    )
    boxes, scores, mask = select(logits, deltas, np.asarray(image_sizes, np.float32))
    for i, reference in enumerate(theirs):
        kept = int(mask[i].sum())
        assert kept == len(reference) and kept > 100  # NMS really dropped some, kept many
        np.testing.assert_allclose(boxes[i, :kept], reference.numpy(), atol=1e-3)
        assert np.all(np.diff(scores[i, :kept]) <= 0)  # best first
        assert not np.any(mask[i, kept:])
