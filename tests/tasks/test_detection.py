"""The detection task end to end: tlx.train on FashionDet with a small darknet cfg (from scratch)
and with the COCO YOLOv3-tiny heads resized; mAP in the summary, the selected checkpoint,
tlx.predict --workdir, and the head adaptation that keeps each anchor's box outputs."""

import json

import numpy as np
import pytest

from tests.detection.test_yolo_loss import TINY
from tests.test_predict_input import run
from tlx.errors import EXIT_CODE

CONFIG = "configs/yolo_fashiondet.py"


@pytest.fixture(autouse=True)
def needs_fashion_mnist(fashion_mnist_files):
    """Every test here draws FashionDet scenes from Fashion-MNIST's items."""


def tiny_detection_flags(workdir, cfg_path, steps=4, **settings):
    values = {
        "model.checkpoint": "",
        "model.arch": str(cfg_path),
        "model.image_size": 64,
        "data.train_examples": 32,
        "data.eval_examples": 12,
        "data.eval_batch_size": 6,
        "batch_size": 4,
        "total_steps": steps,
        "eval_every": 2,
        "checkpoint_every": 2,
        "log_every": 2,
        "optim.warmup_steps": 1,
        "plan.lr_multipliers": "",
    }
    values.update({k.replace("__", "."): v for k, v in settings.items()})
    return [f"--config={CONFIG}", f"--workdir={workdir}"] + [
        f"--config.{k}={v}" for k, v in values.items()
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detection_run")
    cfg = folder / "tiny.cfg"
    cfg.write_text(TINY.replace("classes=2", "classes=10").replace("filters=21", "filters=45"))
    workdir = folder / "run"
    result = run("-m", "tlx.train", *tiny_detection_flags(workdir, cfg))
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


def test_a_detection_run_reports_coco_metrics_and_selects_on_validation_map(trained):
    workdir, result = trained
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["selection"]["metric"] == "mAP"
    for split in ("validation", "test"):
        values = summary["results"][split]
        assert {"mAP", "AP50", "AP75", "AR100", "loss", "box_loss"} <= set(values)
        assert 0 <= values["mAP"] <= values["AP50"] <= 1 and values["examples"] == 12
        assert np.isfinite(values["loss"]) and values["loss"] > 0
    assert "mAP" in result.stdout and "AP50" in result.stdout  # the result table


def predict_a_test_scene(workdir, tmp_path) -> dict:
    """tlx.predict --json on FashionDet's first test scene (160 px) at score threshold 0: its row.

    Checks what every detector's prediction must hold: the image drawn, each box inside the
    scene's own pixels, each label one of FashionDet's."""
    from PIL import Image

    from tlx.data.fashiondet import LABEL_NAMES, scene

    photo = tmp_path / "scene.png"
    Image.fromarray(scene("test", 0).image).save(photo)
    result = run(
        "-m", "tlx.predict", f"--workdir={workdir}", "--json", "--score_threshold=0.0",
        f"--save_images={tmp_path / 'drawn'}", str(photo),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["input"] == str(photo)
    for d in row["detections"]:
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 <= x1 <= 160 and 0 <= y0 <= y1 <= 160  # the scene's own pixels
        assert d["label"] in LABEL_NAMES
    assert (tmp_path / "drawn" / "scene.png").is_file()
    return row


def test_predict_with_a_detection_run(trained, tmp_path):
    row = predict_a_test_scene(trained[0], tmp_path)
    assert row["step"] in (2, 4)
    assert len(row["detections"]) > 0  # at threshold 0 every NMS survivor is reported


def test_detection_config_errors_come_before_training(tmp_path):
    flags = tiny_detection_flags(tmp_path / "a", "yolov3-tiny", data__augment="random_resized_crop")
    result = run("-m", "tlx.train", *flags)
    assert result.returncode == EXIT_CODE
    assert "detection augmentations are" in result.stderr
    flags = tiny_detection_flags(tmp_path / "b", "yolov3-tiny", model__image_size=100)
    result = run("-m", "tlx.train", *flags)
    assert result.returncode == EXIT_CODE and "multiple of 32" in result.stderr


def test_coco_heads_resized_keep_each_anchors_box_and_objectness():
    from tests.models.test_darknet import packaged_yolov3_tiny

    packaged_yolov3_tiny()
    from tlx.zoo.detection import build_darknet_detector
    from tlx.zoo.resolve import load_catalog_weights

    bundle = build_darknet_detector(
        {"name": "darknet_detector", "checkpoint": "darknet:yolov3-tiny"}, num_classes=10
    )
    coco, _ = load_catalog_weights("darknet:yolov3-tiny")
    for head in (15, 22):
        old = np.asarray(coco["params"][f"layer_{head}"]["conv"]["kernel"])
        new = bundle.pretrained[f"layer_{head}/conv/kernel"]
        assert new.shape == (*old.shape[:3], 3 * 15)
        old = old.reshape(*old.shape[:3], 3, 85)
        new = new.reshape(*new.shape[:3], 3, 15)
        np.testing.assert_array_equal(new[..., :5], old[..., :5])
        assert not new[..., 5:].any()  # classes start from zero weights ...
        bias = bundle.pretrained[f"layer_{head}/conv/bias"].reshape(3, 15)
        np.testing.assert_allclose(bias[:, 5:], np.log(0.01 / 0.99), rtol=1e-6)  # ... and a prior
    assert [g for g, _ in bundle.groups] == ["backbone", "neck", "head_0", "head_1"]
