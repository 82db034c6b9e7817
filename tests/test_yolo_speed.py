"""experiments.yolo_speed runs end to end (tiny settings) and writes its table and JSON."""

import json

from tests.models.test_darknet import packaged_yolov3_tiny
from tests.test_predict_input import run


def test_yolo_speed_writes_its_table(tmp_path):
    packaged_yolov3_tiny()  # skips without the packaged weights
    out = tmp_path / "speed"
    result = run(
        "-m", "experiments.yolo_speed", "--inference_batches=1", "--steps=2", "--warmup=1",
        "--interleave_rounds=2", "--train_batch=2", "--train_size=64", f"--out={out}",
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    (row,) = report["inference"]
    assert row["batch"] == 1 and row["tlx_ms"] > 0 and row["opencv_ms"] > 0
    assert report["train_step"]["images_per_s"] > 0 and report["machine"]
    table = out.with_suffix(".md").read_text()
    assert "| 1 |" in table and "tlx train step" in table
