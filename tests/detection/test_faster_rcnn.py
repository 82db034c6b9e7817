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
from tlx.detection.rcnn_loss import (  # noqa: E402
    SamplingSettings,
    roi_loss,
    roi_targets,
    rpn_loss,
    rpn_targets,
    sample_balanced,
)
from tlx.detection.rcnn_transform import RCNNTransform  # noqa: E402
from tlx.detection.roi_align import multiscale_roi_align  # noqa: E402
from tlx.detection.roi_heads import BoxHead, DetectionSettings  # noqa: E402
from tlx.detection.rpn import ProposalSettings  # noqa: E402
from tlx.models.resnet import ResNet  # noqa: E402
from tlx.weights.rules import convert_variables, expected_shapes  # noqa: E402
from tlx.weights.torchvision_faster_rcnn import DETECTOR_RULES, RESNET_FPN_RULES  # noqa: E402

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
    randomise_statistics(model)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.startswith(("rpn.head", "roi_heads.box_predictor")):
                for p in module.parameters(recurse=False):
                    p.normal_(0, 0.05)  # torchvision's 0.01 / zero biases leave every score tied
    return model.eval()


def randomise_statistics(model):
    """Mild random BatchNorm statistics (milder than tests/models/equivalence.py's): through 50
    ResNet layers stronger ones grow the activations until box deltas hit torchvision's clamp
    and many boxes clip to the same image-sized box, ties that NMS then breaks arbitrarily."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torchvision.ops.FrozenBatchNorm2d)):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.0)
                module.bias.normal_(0, 0.1)


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
    assert_same_coco_map(ours, found)


def assert_same_coco_map(ours, found):
    """COCO mAP of both detectors' outputs against one ground truth (torchvision's 20 best boxes,
    each side moved by up to 5% of the box, so the metric ranks real overlaps): equal within
    0.001."""
    from tlx.detection.coco_eval import ImageResult, coco_metrics

    rng = np.random.default_rng(9)
    names = [str(k) for k in range(CLASSES)]
    mine, theirs = [], []
    for i, reference in enumerate(found):
        reference = {k: v.numpy() for k, v in reference.items()}
        best = reference["boxes"][:20]
        size = np.tile(best[:, 2:] - best[:, :2], 2)  # (w, h, w, h)
        gt = best + rng.uniform(-0.05, 0.05, best.shape).astype(np.float32) * size
        gt_classes = reference["labels"][:20]
        valid = np.asarray(ours["valid"][i])
        mine.append(
            ImageResult(
                gt,
                gt_classes,
                np.asarray(ours["boxes"][i])[valid],
                np.asarray(ours["scores"][i])[valid],
                np.asarray(ours["classes"][i])[valid],
            )
        )
        theirs.append(
            ImageResult(
                gt, gt_classes, reference["boxes"], reference["scores"], reference["labels"]
            )
        )
    ours_map, their_map = coco_metrics(mine, names), coco_metrics(theirs, names)
    assert their_map["AP50"] > 0.2  # the ground truth is really found
    for key in ("mAP", "AP50", "AP75"):
        assert abs(ours_map[key] - their_map[key]) <= 0.001, key


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


def positive_label(classes):
    """Class targets (0 background, -1 ignored, >0 object) -> the sampler's 1 / 0 / -1."""
    return np.where(classes > 0, 1, classes)


def test_training_losses_equal_torchvisions_with_the_same_sample(torch_detector, monkeypatch):
    """Matching, targets and both stages' losses, with torchvision's random sampler replaced by
    tlx's (same key per image), so the two draw the same anchors and proposals."""
    rng = np.random.default_rng(2)
    originals = [rng.uniform(0, 1, (150, 200, 3)).astype(np.float32) for _ in range(2)]
    gt = [
        np.float32([[10, 20, 90, 100], [100, 30, 190, 140], [40, 60, 70, 95]]),
        np.float32([[0, 0, 60, 80]]),
    ]
    gt_classes = [np.int64([1, 3, 4]), np.int64([2])]
    keys = jax.random.split(jax.random.key(7), 4)
    calls = []

    def tlx_sampler(total, fraction):
        def sample(labels):  # one call per stage: a list of per-image label tensors
            stage = len(calls)
            calls.append(stage)
            pos, neg = [], []
            for i, label in enumerate(labels):
                label = positive_label(label.numpy().astype(np.int64))
                chosen = np.asarray(sample_balanced(keys[2 * stage + i], label, total, fraction))
                pos.append(torch.from_numpy((chosen & (label == 1)).astype(np.uint8)))
                neg.append(torch.from_numpy((chosen & (label == 0)).astype(np.uint8)))
            return pos, neg

        return sample

    settings = SamplingSettings()
    monkeypatch.setattr(torch_detector.rpn, "fg_bg_sampler", tlx_sampler(256, 0.5))
    monkeypatch.setattr(torch_detector.roi_heads, "fg_bg_sampler", tlx_sampler(512, 0.25))
    torch_detector.train()
    for module in torch_detector.modules():  # BatchNorm keeps its statistics, as FrozenBN
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    tensors = [torch.from_numpy(x.transpose(2, 0, 1).copy()) for x in originals]
    targets = [
        {"boxes": torch.from_numpy(b), "labels": torch.from_numpy(c)}
        for b, c in zip(gt, gt_classes)
    ]
    try:
        with torch.no_grad():
            images, scaled = torch_detector.transform(tensors, targets)
            features = torch_detector.backbone(images.tensors)
            proposals, rpn_losses = torch_detector.rpn(images, features, scaled)
            _, roi_losses = torch_detector.roi_heads(
                features, proposals, images.image_sizes, scaled
            )
            logits, deltas = torch_detector.rpn.head(list(features.values()))
    finally:
        torch_detector.eval()
    assert calls == [0, 1]  # both stages drew tlx's sample

    # The RPN: tlx's targets and loss on torchvision's head outputs and anchors.
    flat_logits = np.concatenate(
        [t.numpy().transpose(0, 2, 3, 1).reshape(2, -1) for t in logits], 1
    )
    flat_deltas = np.concatenate(
        [t.numpy().transpose(0, 2, 3, 1).reshape(2, -1, 4) for t in deltas], 1
    )
    anchors = torch_detector.rpn.anchor_generator(images, list(features.values()))[0].numpy()
    gt_boxes = [t["boxes"].numpy() for t in scaled]
    labels, regression, sampled = [], [], []
    for i in range(2):
        label, target = rpn_targets(gt_boxes[i], np.ones(len(gt_boxes[i]), bool), anchors)
        labels.append(label)
        regression.append(target)
        sampled.append(sample_balanced(keys[i], label, 256, 0.5))
    ours = rpn_loss(
        flat_logits, flat_deltas, np.stack(labels), np.stack(regression), np.stack(sampled)
    )
    assert int(np.sum(np.stack(labels) == 1)) >= 4  # every object has an anchor, some more
    np.testing.assert_allclose(ours["rpn_objectness"], rpn_losses["loss_objectness"], rtol=1e-5)
    np.testing.assert_allclose(ours["rpn_box"], rpn_losses["loss_rpn_box_reg"], rtol=1e-5)

    # The RoI heads: tlx's targets, sample and loss on torchvision's proposals and features.
    pyramid = [f.numpy()[:, :, :, :].transpose(0, 2, 3, 1) for f in list(features.values())[:-1]]
    canvas_size = images.tensors.shape[-2:]
    variables = convert_variables(
        {f"roi_heads.{k}": v.numpy() for k, v in torch_detector.roi_heads.state_dict().items()},
        [r for r in DETECTOR_RULES if r.pattern.startswith(r"roi_heads")],
        None,
    )
    head = BoxHead(CLASSES, 1024)
    batch = {"logits": [], "deltas": [], "classes": [], "targets": [], "sampled": []}
    for i in range(2):
        boxes = proposals[i].numpy()
        candidates, mask, classes, target = roi_targets(
            boxes,
            np.ones(len(boxes), bool),
            gt_boxes[i],
            gt_classes[i].astype(np.int32),
            np.ones(len(gt_boxes[i]), bool),
            settings,
        )
        chosen = sample_balanced(keys[2 + i], positive_label(np.asarray(classes)), 512, 0.25)
        (index,) = np.nonzero(np.asarray(chosen))
        pooled = multiscale_roi_align([p[i] for p in pyramid], candidates[index], canvas_size)
        class_logits, box_deltas = head.apply({"params": variables["params"]["box_head"]}, pooled)
        batch["logits"].append(class_logits)
        batch["deltas"].append(box_deltas)
        batch["classes"].append(np.asarray(classes)[index])
        batch["targets"].append(np.asarray(target)[index])
        batch["sampled"].append(np.ones(len(index), bool))
    ours = roi_loss(
        *(
            np.concatenate(batch[k])[None]
            for k in ("logits", "deltas", "classes", "targets", "sampled")
        )
    )
    assert np.sum(np.concatenate(batch["classes"]) > 0) >= 4  # the appended ground truth at least
    np.testing.assert_allclose(ours["roi_classifier"], roi_losses["loss_classifier"], rtol=1e-5)
    np.testing.assert_allclose(ours["roi_box"], roi_losses["loss_box_reg"], rtol=1e-5)


def test_the_catalogs_coco_detector_loads_a_torchvision_file_and_detects_like_it(
    torch_detector, tmp_path
):
    """torchvision:fasterrcnn_resnet50_fpn_coco through tlx.zoo.load from a local file of the
    same layout (random weights, sharpened so the 91-way softmax passes 0.05): boxes in the
    image's own pixels, the same as torchvision's model(images) gives, at 224 / 320 px."""
    import tlx.zoo

    torch.manual_seed(5)
    reference = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=MIN_SIZE, max_size=MAX_SIZE
    )
    with torch.no_grad():
        state = {
            k: v.clone()
            for k, v in torch_detector.state_dict().items()
            if not k.startswith("roi_heads.box_predictor")
        }
        reference.load_state_dict(state, strict=False)  # the randomised backbone and RPN
        reference.roi_heads.box_predictor.cls_score.weight.normal_(0, 0.3)
    reference.eval()
    path = tmp_path / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    torch.save(reference.state_dict(), path)

    detector = tlx.zoo.load("torchvision:fasterrcnn_resnet50_fpn_coco", checkpoint_path=str(path))
    assert detector.kind == "detector" and detector.labels[1] == "person"
    detector.preprocessing = RCNNTransform(MIN_SIZE, MAX_SIZE)
    image = (np.random.default_rng(3).uniform(0, 1, (150, 200, 3)) * 255).astype(np.uint8)
    ours = detector.detect([image], score_threshold=0.05)[0]
    with torch.no_grad():
        theirs = reference([torch.from_numpy(image.transpose(2, 0, 1) / 255).float()])[0]
    assert len(theirs["scores"]) > 5
    matched_fraction(
        np.array([d["box"] for d in ours]),
        np.array([d["score"] for d in ours]),
        theirs["boxes"].numpy(),
        theirs["scores"].numpy(),
        np.array([d["class_id"] for d in ours]),
        theirs["labels"].numpy(),
    )
    assert {d["label"] for d in ours} <= set(detector.labels)


def test_the_mobilenet_v3_320_detector_converts_like_torchvisions(tmp_path):
    """torchvision:fasterrcnn_mobilenet_v3_large_320_fpn from a torchvision file (random weights,
    randomised BatchNorm): its transform (320 / 640), both pyramid levels at stride 32 and
    FrozenBatchNorm's epsilon make the RPN's logits equal to torchvision's (1e-4 of their scale),
    and its proposal settings (150 / 150, score >= 0.05) as many proposals.

    Proposals and detections are not matched box by box here: random MobileNetV3 weights give
    nearly constant features, so many anchors' logits tie to 1e-6 and top-k's and NMS's choices
    among them flip with the last bit. The ResNet-50 tests above hold that shared code to 99%."""
    import tlx.zoo

    torch.manual_seed(11)
    reference = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None
    )
    randomise_statistics(reference)
    with torch.no_grad():
        for name, module in reference.named_modules():
            if name.startswith(("rpn.head", "roi_heads.box_predictor")):
                for p in module.parameters(recurse=False):
                    p.normal_(0, 0.3)
        reference.roi_heads.box_predictor.cls_score.weight.normal_(0, 3.0)  # scores past 0.05
    reference.eval()
    path = tmp_path / "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"
    torch.save(reference.state_dict(), path)
    detector = tlx.zoo.load(
        "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", checkpoint_path=str(path)
    )
    rng = np.random.default_rng(1)
    images = [(rng.uniform(0, 1, (240, 360, 3)) * 255).astype(np.uint8) for _ in range(2)]
    tensors = [torch.from_numpy(im.transpose(2, 0, 1) / 255).float() for im in images]
    with torch.no_grad():
        batch, _ = reference.transform(tensors)
        features = reference.backbone(batch.tensors)
        logits = reference.rpn.head(list(features.values()))[0]
        proposals, _ = reference.rpn(batch, features)
        theirs = reference(tensors)
    canvas, sizes, _ = detector.preprocessing.batch([im.astype(np.float32) / 255 for im in images])
    out = jax.tree.map(np.asarray, detector(canvas, sizes))
    flat = np.concatenate([t.numpy().transpose(0, 2, 3, 1).reshape(2, -1) for t in logits], 1)
    scale = np.abs(flat).max()
    np.testing.assert_allclose(out["rpn_logits"], flat, atol=1e-4 * scale)
    ours = detector.detect(images, score_threshold=0.05)
    for i in range(2):
        kept = int(out["proposal_mask"][i].sum())
        assert kept == len(proposals[i]) and 0 < kept <= 150
        assert len(theirs[i]["boxes"]) > 5 and len(ours[i]) > 5
        for d in ours[i]:  # in the image's own pixels, named from COCO's 91
            x0, y0, x1, y1 = d["box"]
            assert 0 <= x0 <= x1 <= 360 and 0 <= y0 <= y1 <= 240 and d["label"] in detector.labels
