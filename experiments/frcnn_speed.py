"""Faster R-CNN train-step time, tlx against torchvision on the same FashionDet batches,
interleaved (A B B A ...: experiments.bench.timing), with the CPU named.

    python -m experiments.frcnn_speed --out=experiments/results/frcnn_speed_cpu

Both fine-tune the same detector (experiments.frcnn_reference's: the ImageNet MobileNetV2 with
its pyramid on strides 16 and 32, 320 px canvas) with every group training, batches of 8:
torchvision's eager step (forward with losses, backward, SGD) and tlx's compiled step, the
trainer's own program (experiments.speed_vs_torch.tlx_stage) with tlx's two-stage detection task.
Writes OUT.json and OUT.md; the ratio is tlx's median over torchvision's (below 1: tlx faster).

On a machine with a GPU both run on it (JAX's default device; torch on cuda:0, each step waited
for with torch.cuda.synchronize), as the GPU script's cell (experiments/gpu_profile.sh):

    python -m experiments.frcnn_speed --steps=10 --interleave_rounds=2 --out=runs/bench_gpu/frcnn_speed
"""

from __future__ import annotations

import itertools
import json
import pathlib
import time

import numpy as np
from absl import app, flags

from experiments import speed_vs_torch  # defines --out, --steps, --warmup (shared flags)
from experiments.bench.timing import StepTimer, time_interleaved
from experiments.frcnn_reference import as_torch, torchvision_detector, train_batch

DEFAULTS = {"out": "runs/frcnn_speed", "steps": 20, "warmup": 2}


def define_flags() -> None:
    """Defined only when run as a program, so that importing this module beside other
    experiments (tests do, in one process) claims no flag name."""
    flags.DEFINE_integer("interleave_rounds", 4, "Alternating rounds of the timed steps.")
    flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads (0: its default).")
    flags.DEFINE_string(
        "torch_device", "auto", "torchvision's device: auto (cuda when there is one), cpu or cuda."
    )


SIZE = 320


def batches(seed: int = 0):
    """Endless (raw batch) of 8 scenes, the same sequence for both frameworks."""
    for step in itertools.count():
        yield train_batch(seed, step % 8)  # 8 distinct batches, cycled


def torch_device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def torchvision_timer(device: str) -> StepTimer:
    import torch

    model = torchvision_detector(False, frozen_blocks=0).train().to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def placed():  # on the device before the clock starts, as tlx's batches are
        for batch in batches():
            images, targets = as_torch(batch)
            yield (
                [im.to(device) for im in images],
                [{k: v.to(device) for k, v in t.items()} for t in targets],
            )

    def run(batch):
        images, targets = batch
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device != "cpu":
            torch.cuda.synchronize()

    return StepTimer(run, placed())


def tlx_timer() -> StepTimer:
    from tlx.data.preprocess import DetectorInput
    from tlx.detection.batches import DetectionBatchMaker
    from tlx.tasks.detection import TwoStageDetection
    from tlx.zoo.faster_rcnn import build_faster_rcnn

    bundle = build_faster_rcnn(
        {"name": "faster_rcnn", "checkpoint": "torchvision:mobilenet_v2", "image_size": SIZE}, 10
    )
    task = TwoStageDetection([str(i) for i in range(10)])
    program, carry, mode = speed_vs_torch.tlx_stage(bundle, "finetune", 1e-3, task=task)

    def placed():
        for raw in batches():
            source = [{"image": im, "boxes": b, "labels": lab} for im, b, lab in raw]
            maker = DetectionBatchMaker(source, DetectorInput(SIZE), max_boxes=8)
            yield mode.put_batch(maker(0, np.arange(len(source))))

    return StepTimer(speed_vs_torch.step_runner(program, carry), placed())


def main(argv):
    del argv
    speed_vs_torch.use_flag_defaults(DEFAULTS)
    import jax
    import torch

    from tlx.machine import machine

    if flags.FLAGS.torch_threads:
        torch.set_num_threads(flags.FLAGS.torch_threads)
    device = torch_device(flags.FLAGS.torch_device)
    timers = [tlx_timer(), torchvision_timer(device)]
    time_interleaved(timers, flags.FLAGS.steps, flags.FLAGS.warmup, flags.FLAGS.interleave_rounds)
    for timer in timers:
        if timer.error is not None:
            raise timer.error
    tlx_result, tv_result = (t.result() for t in timers)
    report = {
        "machine": machine(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "jax_device": jax.devices()[0].device_kind,
        "torch_device": torch.cuda.get_device_name() if device != "cpu" else "cpu",
        "batch": 8,
        "size": SIZE,
        "tlx": tlx_result,
        "torchvision": tv_result,
        "tlx_over_torchvision": tlx_result["step_median_s"] / tv_result["step_median_s"],
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = pathlib.Path(flags.FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    t, v = report["tlx"], report["torchvision"]
    return "\n".join(
        [
            "# Faster R-CNN (MobileNetV2 FPN, 320 px, batch 8) train step: tlx vs torchvision",
            "",
            f"Machine: {report['machine']}; jax {report['jax']}, torch {report['torch']} "
            f"({report['torch_threads']} threads); {report['written']}.",
            f"Devices: tlx on {report.get('jax_device', 'cpu')}, torchvision on "
            f"{report.get('torch_device', 'cpu')}.",
            "",
            "| | median s/step | p10 | p90 | steps |",
            "|---|---:|---:|---:|---:|",
            f"| tlx | {t['step_median_s']:.3f} | {t['step_p10_s']:.3f} | {t['step_p90_s']:.3f} "
            f"| {t['steps']} |",
            f"| torchvision | {v['step_median_s']:.3f} | {v['step_p10_s']:.3f} | "
            f"{v['step_p90_s']:.3f} | {v['steps']} |",
            "",
            f"tlx / torchvision step time: {report['tlx_over_torchvision']:.2f}x",
            "",
        ]
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
