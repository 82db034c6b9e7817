"""The catalog's darknet:yolov3-tiny through tlx.zoo.load and tlx.predict, against OpenCV's own
pipeline (blobFromImage, readNetFromDarknet, NMSBoxesBatched) on a real photo."""

import json

import numpy as np
import pytest

from tests.models.test_darknet import grace_hopper, opencv_detections, packaged_yolov3_tiny
from tests.test_predict_input import run
from tlx.errors import EXIT_CODE

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def detector():
    packaged_yolov3_tiny()  # skips when the packaged weights are not installed
    import tlx.zoo

    return tlx.zoo.load("darknet:yolov3-tiny")


def test_load_gives_a_detector_with_coco_labels_and_groups(detector):
    assert detector.kind == "detector" and len(detector.labels) == 80
    assert detector.labels[0] == "person" and detector.labels[27] == "tie"
    assert [g for g, _ in detector.groups] == ["backbone", "neck", "head_0", "head_1"]


def test_detect_matches_opencvs_pipeline_on_a_photo(detector):
    image = grace_hopper()
    cfg, weights = packaged_yolov3_tiny()
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    # blobFromImage resizes the uint8 image with cv2.resize; swapRB=False: the photo is RGB.
    net.setInput(cv2.dnn.blobFromImage(image, 1 / 255, (416, 416), swapRB=False, crop=False))
    rows = net.forward(list(net.getUnconnectedOutLayersNames()))
    boxes, scores, classes = opencv_detections(rows, image.shape[:2], 0.25, 0.45)
    (found,) = detector.detect([image], score_threshold=0.25)
    assert [d["class_id"] for d in found] == classes.tolist()
    # Inputs differ by at most one grey level (OpenCV's fixed-point resize): a box moves by well
    # under a pixel, a score by well under 0.01 (measured: 0.09 px, 2e-4).
    np.testing.assert_allclose([d["box"] for d in found], boxes, atol=1.0)
    np.testing.assert_allclose([d["score"] for d in found], scores, atol=0.01)


def test_predict_prints_detections_json_and_writes_annotated_images(tmp_path):
    packaged_yolov3_tiny()
    from PIL import Image

    photo = tmp_path / "hopper.jpg"
    Image.fromarray(grace_hopper()).save(photo)
    out = tmp_path / "drawn"
    result = run(
        "-m", "tlx.predict", "--model=darknet:yolov3-tiny", "--json", f"--save_images={out}",
        str(photo),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["input"] == str(photo)
    assert row["detections"][0]["label"] == "tie" and row["detections"][0]["score"] > 0.5
    x0, y0, x1, y1 = row["detections"][0]["box"]
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 600  # the photo's own pixels (512 x 600)
    drawn = np.asarray(Image.open(out / "hopper.png"))
    assert drawn.shape == (600, 512, 3)
    assert not np.array_equal(drawn, np.asarray(Image.open(photo)))  # boxes were drawn


def test_letterbox_input_finds_the_same_tie_in_the_images_pixels(detector):
    import dataclasses

    from tlx.detection.boxes import box_iou

    image = grace_hopper()
    (plain,) = detector.detect([image])
    boxed = dataclasses.replace(detector, preprocessing=dataclasses.replace(
        detector.preprocessing, letterbox=True))  # fmt: skip
    (letterboxed,) = boxed.detect([image])
    assert letterboxed and letterboxed[0]["label"] == "tie"
    overlap = box_iou(np.asarray([plain[0]["box"]]), np.asarray([letterboxed[0]["box"]]))
    assert float(overlap[0, 0]) > 0.7  # the same tie, mapped back through the grey borders


def test_predict_refuses_an_unreadable_image_and_save_images_for_classifiers(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    result = run("-m", "tlx.predict", "--model=darknet:yolov3-tiny", str(bad))
    assert result.returncode == EXIT_CODE
    assert "cannot read image" in result.stderr and "notes.jpg" in result.stderr
    result = run(
        "-m", "tlx.predict", "--model=torchvision:mobilenet_v2", f"--save_images={tmp_path}",
        str(bad),
    )  # fmt: skip
    assert result.returncode == EXIT_CODE
    assert "--save_images draws detections" in result.stderr


def test_a_detector_is_refused_as_a_classifier_backbone():
    from tlx.zoo.vision import build_image_classifier

    with pytest.raises(ValueError, match="is a detector"):
        build_image_classifier(
            {"name": "image_classifier", "checkpoint": "darknet:yolov3-tiny"}, num_classes=3
        )
