"""YOLOv3-tiny inference, tlx against OpenCV DNN on the same images, interleaved; and tlx's
train step throughput.

    python -m experiments.yolo_speed --out=experiments/results/yolo_speed_cpu

Both run darknet's COCO YOLOv3-tiny at 416x416 on batches of real photos (scikit-learn's and
matplotlib's samples, repeated to the batch size), already resized: the timed work is the
network (tlx: the jitted forward; OpenCV: net.forward of the yolo layers), not the decoding.
Batches of 1 and 8, `--interleave_rounds` alternating rounds (A B B A ...; experiments.bench.timing) so a
drifting machine slows both alike. The train step is tlx's fine-tuning step of the
darknet_detector on FashionDet-sized inputs (--train_size, batch --train_batch), the trainer's
own program (tlx.stage_program), YOLOv3 loss included. Writes OUT.md and OUT.json with the CPU
named.
"""

from __future__ import annotations

import json
import pathlib
import time
from importlib import resources

import numpy as np
from absl import app, flags

from experiments import speed_vs_torch  # defines --out, --steps, --warmup (shared flags)
from experiments.bench.timing import StepTimer, time_interleaved

# The shared flags' defaults suit speed_vs_torch; this benchmark's own are these.
DEFAULTS = {"out": "runs/yolo_speed", "steps": 40, "warmup": 3}


def define_flags() -> None:
    """Defined only when run as a program, so that importing this module beside other
    experiments (tests do, in one process) claims no flag name."""
    flags.DEFINE_list("inference_batches", ["1", "8"], "Inference batch sizes.")
    flags.DEFINE_integer("interleave_rounds", 4, "Alternating rounds of the timed steps.")
    flags.DEFINE_integer("train_batch", 16, "Train step batch (0: skip).")
    flags.DEFINE_integer("train_size", 160, "Train step input size.")
    flags.DEFINE_bool(
        "unfolded", False, "Time tlx with BatchNorm as separate passes (the training graph)."
    )
    flags.DEFINE_integer("opencv_threads", 0, "cv2.setNumThreads (0: OpenCV's default).")


SIZE = 416


def photos(count: int) -> np.ndarray:
    """`count` real photos resized to 416x416 (RGB, [0, 1]), cycling through the samples."""
    import matplotlib
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from tlx.data.resize import resize_bilinear

    images = list(load_sample_images().images)
    hopper = pathlib.Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    images.append(np.asarray(Image.open(hopper).convert("RGB")))
    batch = [resize_bilinear(images[i % len(images)], SIZE, SIZE) for i in range(count)]
    return np.stack(batch).astype(np.float32) / 255


def repeat(batch):
    while True:
        yield batch


def inference_timers(batch_size: int):
    import cv2
    import jax

    import tlx.zoo
    from tlx.zoo.catalog import get_entry
    from tlx.zoo.resolve import resolve_image_weights

    detector = tlx.zoo.load("darknet:yolov3-tiny")
    # What detector.detect runs: BatchNorm folded into the convolutions (unless --unfolded).
    module, variables = (
        (detector.module, detector.variables)
        if flags.FLAGS.unfolded
        else detector.inference_model()
    )
    forward = jax.jit(lambda v, x: module.apply(v, x))
    nhwc = photos(batch_size)

    def tlx_step(x):
        jax.block_until_ready(forward(variables, x))

    # OpenCV reads the very files tlx converts: the bundled cfg, the catalog's resolved weights.
    cfg = resources.files("tlx.models").joinpath("cfg/yolov3-tiny.cfg")
    weights = resolve_image_weights(get_entry("darknet:yolov3-tiny"))
    with resources.as_file(cfg) as cfg_path:
        net = cv2.dnn.readNetFromDarknet(str(cfg_path), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    names = list(net.getUnconnectedOutLayersNames())
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))

    def opencv_step(x):
        net.setInput(x)
        net.forward(names)

    return StepTimer(tlx_step, repeat(nhwc)), StepTimer(opencv_step, repeat(nchw))


def train_step_result(batch_size: int, size: int) -> dict:
    """tlx's fine-tuning step of darknet_detector (COCO heads resized to 10 classes), the
    trainer's own compiled program, on FashionDet scenes."""
    from experiments.bench.timing import time_steps
    from experiments.speed_vs_torch import step_runner, tlx_stage
    from tlx.data.fashiondet import scene
    from tlx.data.preprocess import DetectorInput
    from tlx.detection.batches import DetectionBatchMaker
    from tlx.tasks import Detection
    from tlx.zoo.detection import build_darknet_detector

    bundle = build_darknet_detector(
        {"name": "darknet_detector", "checkpoint": "darknet:yolov3-tiny", "image_size": size}, 10
    )
    task = Detection().for_model(bundle, [str(i) for i in range(10)])
    source = [
        {"image": s.image, "boxes": s.boxes, "labels": s.labels}
        for s in (scene("train", i, size=size) for i in range(batch_size))
    ]
    batch = DetectionBatchMaker(source, DetectorInput(size), max_boxes=8)(0, np.arange(batch_size))
    program, carry, mode = tlx_stage(bundle, "finetune", learning_rate=1e-3, task=task)
    placed = mode.put_batch(batch)
    run = step_runner(program, carry)
    result = time_steps(run, repeat(placed), max(flags.FLAGS.steps // 2, 2), 2)
    result["images_per_s"] = batch_size / result["step_median_s"]
    result["batch"], result["size"] = batch_size, size
    return result


def main(argv):
    del argv
    speed_vs_torch.use_flag_defaults(DEFAULTS)
    import cv2
    import jax

    from tlx.machine import machine

    if flags.FLAGS.opencv_threads:
        cv2.setNumThreads(flags.FLAGS.opencv_threads)
    rows = []
    for batch_size in map(int, flags.FLAGS.inference_batches):
        tlx_timer, cv_timer = inference_timers(batch_size)
        time_interleaved(
            [tlx_timer, cv_timer],
            flags.FLAGS.steps,
            flags.FLAGS.warmup,
            flags.FLAGS.interleave_rounds,
        )
        tlx_result, cv_result = tlx_timer.result(), cv_timer.result()
        rows.append(
            {
                "batch": batch_size,
                "tlx_ms": 1000 * tlx_result["step_median_s"],
                "opencv_ms": 1000 * cv_result["step_median_s"],
                "tlx_images_per_s": batch_size / tlx_result["step_median_s"],
                "opencv_images_per_s": batch_size / cv_result["step_median_s"],
                "speedup": cv_result["step_median_s"] / tlx_result["step_median_s"],
                "tlx": tlx_result,
                "opencv": cv_result,
            }
        )
    train = (
        train_step_result(flags.FLAGS.train_batch, flags.FLAGS.train_size)
        if flags.FLAGS.train_batch
        else None
    )
    report = {
        "machine": machine(),
        "jax": jax.__version__,
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "batchnorm": "separate (training graph)"
        if flags.FLAGS.unfolded
        else "folded into the convs",
        "steps": flags.FLAGS.steps,
        "rounds": flags.FLAGS.interleave_rounds,
        "inference": rows,
        "train_step": train,
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = pathlib.Path(flags.FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    lines = [
        "# YOLOv3-tiny inference: tlx vs OpenCV DNN (416x416, COCO weights)",
        "",
        f"Machine: {report['machine']}; jax {report['jax']}, OpenCV {report['opencv']} "
        f"({report['opencv_threads']} threads); tlx BatchNorm "
        f"{report.get('batchnorm', 'separate (training graph)')}; {report['steps']} timed steps each in "
        f"{report['rounds']} interleaved rounds; {report['written']}.",
        "",
        "| batch | tlx ms | OpenCV ms | tlx images/s | OpenCV images/s | tlx / OpenCV speed |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["inference"]:
        lines.append(
            f"| {r['batch']} | {r['tlx_ms']:.1f} | {r['opencv_ms']:.1f} | "
            f"{r['tlx_images_per_s']:.1f} | {r['opencv_images_per_s']:.1f} | {r['speedup']:.2f}x |"
        )
    train = report.get("train_step")
    if train:
        lines += [
            "",
            f"tlx train step (fine-tuning from COCO, 10 classes, {train['size']} px, batch "
            f"{train['batch']}; YOLOv3 loss, Adam): {train['step_median_s'] * 1000:.0f} ms "
            f"median, {train['images_per_s']:.1f} images/s.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    define_flags()
    app.run(main)
