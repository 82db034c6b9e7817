"""Faster R-CNN through tlx.train and tlx.predict: a tiny from-scratch MobileNetV2 detector on
FashionDet (64 px canvas, 4 steps), its losses and COCO metrics in the summary, the plan's groups,
the selected checkpoint predicting boxes in the image's own pixels, and config errors before any
compute."""

import json

import numpy as np
import pytest

from tests.tasks.test_detection import predict_a_test_scene
from tests.test_predict_input import run
from tlx.errors import EXIT_CODE

CONFIG = "configs/faster_rcnn_fashiondet.py"


@pytest.fixture(autouse=True)
def needs_fashion_mnist(fashion_mnist_files):
    """FashionDet scenes are drawn from Fashion-MNIST's items."""


def tiny_flags(workdir, **settings):
    values = {
        "model.checkpoint": "",
        "model.arch": "mobilenet_v2",
        "model.image_size": 64,
        "data.train_examples": 16,
        "data.eval_examples": 6,
        "data.eval_batch_size": 6,
        "batch_size": 2,
        "total_steps": 4,
        "eval_every": 2,
        "checkpoint_every": 2,
        "log_every": 2,
    }
    values.update({k.replace("__", "."): v for k, v in settings.items()})
    return [f"--config={CONFIG}", f"--workdir={workdir}"] + [
        f"--config.{k}={v}" for k, v in values.items()
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("frcnn_run") / "run"
    result = run("-m", "tlx.train", *tiny_flags(workdir))
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


def test_a_faster_rcnn_run_reports_its_losses_and_coco_metrics(trained):
    workdir, result = trained
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["selection"]["metric"] == "mAP"
    for split in ("validation", "test"):
        values = summary["results"][split]
        assert {"mAP", "AP50", "AP75", "loss", "rpn_objectness_loss", "roi_box_loss"} <= set(values)
        assert 0 <= values["mAP"] <= values["AP50"] <= 1 and values["examples"] == 6
        parts = [
            values[f"{k}_loss"] for k in ("rpn_objectness", "rpn_box", "roi_classifier", "roi_box")
        ]
        assert np.isclose(values["loss"], sum(parts), rtol=1e-4)  # the total is its four parts
    # freeze_to k=8 of stem, stage_1..7, last_conv, fpn, rpn, head: four groups frozen.
    assert "stage_3" in result.stdout and "FROZEN" in result.stdout
    assert "rpn_objectness" in (workdir / "metrics.jsonl").read_text()


def test_predict_with_a_faster_rcnn_run(trained, tmp_path):
    predict_a_test_scene(trained[0], tmp_path)


def test_faster_rcnn_config_errors_come_before_training(tmp_path):
    result = run("-m", "tlx.train", *tiny_flags(tmp_path / "a", model__batchnorm="train"))
    assert result.returncode == EXIT_CODE and "FrozenBatchNorm2d" in result.stderr
    result = run("-m", "tlx.train", *tiny_flags(tmp_path / "b", model__image_size=100))
    assert result.returncode == EXIT_CODE and "multiple of 32" in result.stderr
    result = run("-m", "tlx.train", *tiny_flags(tmp_path / "c", model__arch="inception_v3"))
    assert result.returncode == EXIT_CODE and "takes a backbone of" in result.stderr


def test_faster_rcnn_trains_under_pmap_on_two_devices(tmp_path):
    """The static shapes hold per device: one image on each of 2 CPU devices, losses finite and
    COCO metrics reported (samples differ from jit's, each device drawing its own)."""
    workdir = tmp_path / "pmap"
    flags = tiny_flags(workdir, total_steps=2, parallel="pmap")
    result = run("-m", "tlx.train", "--cpu_devices=2", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    values = json.loads((workdir / "summary.json").read_text())["results"]["test"]
    assert np.isfinite(values["loss"]) and 0 <= values["mAP"] <= 1
    assert "pmap" in (workdir / "config.json").read_text()
