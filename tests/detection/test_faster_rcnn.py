"""tlx's Faster R-CNN (ResNet-50 FPN) against torchvision's fasterrcnn_resnet50_fpn end to end,
on random weights with randomised BatchNorm statistics (no COCO detector weights install offline):
the transform, the pyramid, the RPN outputs, the proposals and the detections.

Tolerances are relative to each output's scale: ResNet-50 sums thousands of float32 products per
output, and the two frameworks (and CPUs: AVX2, AVX-512, AMX) order them differently, ~1e-6 of
the scale per layer over ~50 layers; 1e-4 of the scale bounds that. Proposals and detections pass
through top-k and NMS, where a near-tie may flip, so they are matched as the issue states: at
least 99% of torchvision's boxes found at IoU >= 0.999 with the score within 1e-4."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from tlx.detection.boxes import box_iou  # noqa: E402
from tlx.detection.faster_rcnn import FasterRCNN, init_faster_rcnn  # noqa: E402
from tlx.detection.rcnn_transform import RCNNTransform  # noqa: E402
from tlx.detection.roi_heads import DetectionSettings  # noqa: E402
from tlx.detection.rpn import ProposalSettings  # noqa: E402
from tlx.models.resnet import ResNet  # noqa: E402
from tlx.weights.rules import convert_variables, expected_shapes  # noqa: E402
from tlx.weights.torchvision_faster_rcnn import RESNET_FPN_RULES  # noqa: E402

CLASSES, MIN_SIZE, MAX_SIZE = 5, 224, 320


@pytest.fixture(scope="module")
def torch_detector():
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=CLASSES,
        min_size=MIN_SIZE,
        max_size=MAX_SIZE,
    )
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.0)
                module.bias.normal_(0, 0.1)
            elif name.startswith(("rpn.head", "roi_heads.box_predictor")):
                for p in module.parameters(recurse=False):
                    p.normal_(0, 0.05)  # torchvision's 0.01 / zero biases leave every score tied
    return model.eval()


def tlx_detector():
    return FasterRCNN(
        backbone=ResNet(depth=50, num_classes=None, pooling=None),
        endpoints=("layer1", "layer2", "layer3", "layer4"),
        num_classes=CLASSES,
        proposals=ProposalSettings(),  # torchvision's evaluation defaults: 1000 / 1000
        detections=DetectionSettings(),
    )


def test_converted_resnet50_fpn_detects_what_torchvision_detects(torch_detector):
    rng = np.random.default_rng(0)
    originals = [
        rng.uniform(0, 1, (150, 200, 3)).astype(np.float32),
        rng.uniform(0, 1, (180, 160, 3)).astype(np.float32),
    ]
    tensors = [torch.from_numpy(x.transpose(2, 0, 1).copy()) for x in originals]
    with torch.no_grad():
        images, _ = torch_detector.transform(tensors)
        features = torch_detector.backbone(images.tensors)
        proposals, _ = torch_detector.rpn(images, features)
        found, _ = torch_detector.roi_heads(features, proposals, images.image_sizes)

    transform = RCNNTransform(MIN_SIZE, MAX_SIZE)
    canvas, sizes, _ = transform.batch(originals)
    theirs_canvas = images.tensors.numpy().transpose(0, 2, 3, 1)
    assert canvas.shape == theirs_canvas.shape
    np.testing.assert_allclose(canvas, theirs_canvas, atol=1e-5)
    np.testing.assert_array_equal(sizes, np.float32(images.image_sizes))

    model = tlx_detector()
    state = {k: v.numpy() for k, v in torch_detector.state_dict().items()}
    shapes = jax.eval_shape(lambda: init_faster_rcnn(model, jax.random.key(0), canvas, sizes))
    variables = convert_variables(state, RESNET_FPN_RULES, expected_shapes(shapes))
    ours, _ = jax.jit(lambda v, x, s: model.apply(v, x, s, mutable=["intermediates"]))(
        variables, canvas, sizes
    )

    def close(mine, reference, name):
        scale = np.abs(reference).max()
        np.testing.assert_allclose(mine, reference, atol=1e-4 * scale, err_msg=name)

    with torch.no_grad():
        rpn_logits = torch_detector.rpn.head(list(features.values()))[0]
    flat = np.concatenate(
        [t.numpy().transpose(0, 2, 3, 1).reshape(2, -1) for t in rpn_logits], axis=1
    )
    close(np.asarray(ours["rpn_logits"]), flat, "rpn logits")

    for i in range(2):
        kept = int(ours["proposal_mask"][i].sum())
        assert abs(kept - len(proposals[i])) <= 0.01 * len(proposals[i])
        matched_fraction(ours["proposals"][i, :kept], None, proposals[i].numpy(), None)
        valid = np.asarray(ours["valid"][i])
        theirs_i = {k: v.numpy() for k, v in found[i].items()}
        assert len(theirs_i["scores"]) > 20  # random weights still detect plenty
        fraction = matched_fraction(
            ours["boxes"][i][valid],
            ours["scores"][i][valid],
            theirs_i["boxes"],
            theirs_i["scores"],
            ours["classes"][i][valid],
            theirs_i["labels"],
        )
        assert fraction >= 0.99, f"image {i}: {fraction:.3f} of the detections matched"


def matched_fraction(boxes, scores, their_boxes, their_scores, classes=None, their_classes=None):
    """The fraction of torchvision's boxes with one of ours at IoU >= 0.999 (same class, score
    within 1e-4); asserts it is at least 0.99."""
    iou = np.asarray(box_iou(np.asarray(their_boxes), np.asarray(boxes)))
    same = iou >= 0.999
    if classes is not None:
        same &= np.asarray(their_classes)[:, None] == np.asarray(classes)[None, :]
    if scores is not None:
        same &= np.abs(np.asarray(their_scores)[:, None] - np.asarray(scores)[None, :]) <= 1e-4
    fraction = same.any(axis=1).mean()
    assert fraction >= 0.99, f"{fraction:.3f} of torchvision's boxes matched"
    return fraction
