r"""torchvision's Faster R-CNN on FashionDet with the recipe of configs/faster_rcnn_fashiondet.py,
the reference tlx's fine-tune is held to (issue 23), and its train-step time beside tlx's.

    python -m experiments.frcnn_reference --seeds=0,1,2 --out=experiments/results/frcnn_reference
    python -m experiments.frcnn_reference --seeds=0 --random_init --out=...   # the scratch row

The detector: torchvision's FasterRCNN on the packaged ImageNet MobileNetV2 (FrozenBatchNorm2d),
the pyramid on features[13] (stride 16, 96 channels) and features[18] (stride 32, 1280) plus the
max-pooled level, 5 anchor sizes x 3 ratios per level, RoIAlign on the two real levels, 320 px
(min_size=320, max_size=640), features 0-6 frozen (with --random_init none: every block trains,
as in tlx's scratch arm). Training: 400 steps of 8 scenes drawn from the 20,000 training scenes
(tlx.data.fashiondet, the same scenes tlx trains on), half flipped, SGD
momentum 0.9, L2 1e-4, OneCycleLR to 0.01 (torch's defaults: 30% rising, cosine), gradients
clipped to norm 10, 2 threads. Evaluation: the 200 first test scenes, COCO metrics by the same
pycocotools code tlx reports with (tlx.detection.coco_eval), at the last step.

The train-step time of the two, interleaved, is experiments.frcnn_speed. An existing PREFIX.json
(same settings) keeps its other seeds' runs and each seed is written as it finishes, so the three
seeds may come from different sessions; each run names its machine. The table against tlx's
study, seed by seed, is experiments.frcnn_versus_torchvision.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from tlx import cli

SCENES, EVAL_SCENES, STEPS, BATCH = 20_000, 200, 400, 8
SCENE_SIZE = 160


def define_flags() -> None:
    flags.DEFINE_string("seeds", "0", "Comma-separated seeds, one run each.")
    flags.DEFINE_bool("random_init", False, "The same detector from random init (no ImageNet).")
    flags.DEFINE_integer("steps", STEPS, "Train steps.")
    flags.DEFINE_integer("threads", 2, "torch.set_num_threads.")
    flags.DEFINE_string("out", None, "Output prefix: PREFIX.json.")
    flags.mark_flags_as_required(["out"])


def torchvision_detector(random_init: bool, frozen_blocks: int | None = None):
    """The reference detector. Blocks 0-6 stay frozen on ImageNet weights (torchvision's
    trainable_backbone_layers); from random init every block trains, as tlx's scratch arm (plan
    finetune): random blocks left frozen would handicap the baseline (the issue's first scratch
    figure, mAP 0.072, froze them)."""
    import torch
    import torchvision
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    from tlx.zoo.resolve import resolve_image_weights

    if frozen_blocks is None:
        frozen_blocks = 0 if random_init else 7
    net = torchvision.models.mobilenet_v2(norm_layer=FrozenBatchNorm2d)
    if not random_init:
        path = resolve_image_weights("torchvision:mobilenet_v2", offline=True)
        net.load_state_dict(torch.load(path, map_location="cpu"))
    for index, block in enumerate(net.features):
        if index < frozen_blocks:  # torchvision's trainable_backbone_layers: the first stay fixed
            block.requires_grad_(False)
    backbone = BackboneWithFPN(
        net.features, {"13": "0", "18": "1"}, [96, 1280], 256, extra_blocks=LastLevelMaxPool()
    )
    anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
    return FasterRCNN(
        backbone, num_classes=11, min_size=320, max_size=640, rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(["0", "1"], 7, 2),
    )  # fmt: skip


def train_batch(seed: int, step: int):
    """8 training scenes for (seed, step): indices and flips from one generator, as arrays."""
    from tlx.data.fashiondet import scene

    rng = np.random.default_rng([seed, step])
    batch = []
    for index in rng.integers(0, SCENES, BATCH):
        s = scene("train", int(index), 0, SCENE_SIZE)
        image, boxes = s.image, s.boxes.copy()
        if rng.random() < 0.5:
            image = image[:, ::-1]
            boxes[:, [0, 2]] = SCENE_SIZE - boxes[:, [2, 0]]
        batch.append((np.ascontiguousarray(image), boxes, s.labels))
    return batch


def as_torch(batch):
    import torch

    images = [
        torch.from_numpy(im.transpose(2, 0, 1).astype(np.float32) / 255) for im, _, _ in batch
    ]
    targets = [
        {"boxes": torch.from_numpy(b), "labels": torch.from_numpy(lab + 1)} for _, b, lab in batch
    ]
    return images, targets


def train_torchvision(seed: int, random_init: bool, steps: int) -> tuple[object, float]:
    import torch

    torch.manual_seed(seed)
    model = torchvision_detector(random_init).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=steps)
    start = time.perf_counter()
    for step in range(steps):
        images, targets = as_torch(train_batch(seed, step))
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        schedule.step()
    return model, time.perf_counter() - start


def evaluate(model) -> dict[str, float]:
    import torch

    from tlx.data.fashiondet import LABEL_NAMES, scene
    from tlx.detection.coco_eval import ImageResult, coco_metrics

    model.eval()
    results = []
    with torch.no_grad():
        for start in range(0, EVAL_SCENES, 20):
            scenes = [scene("test", i, 0, SCENE_SIZE) for i in range(start, start + 20)]
            images, _ = as_torch([(s.image, s.boxes, s.labels) for s in scenes])
            for s, found in zip(scenes, model(images)):
                results.append(
                    ImageResult(
                        gt_boxes=s.boxes, gt_classes=s.labels, boxes=found["boxes"].numpy(),
                        scores=found["scores"].numpy(), classes=found["labels"].numpy() - 1,
                    )
                )  # fmt: skip
    metrics = coco_metrics(results, LABEL_NAMES)
    return {k: metrics[k] for k in ("mAP", "AP50", "AP75")}


def check_settings(previous: dict | None, settings: dict) -> None:
    """Refuse to extend a record made with other settings (random_init, steps)."""
    previous = previous or dict(settings)
    differing = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v}
    if differing:
        raise ValueError(
            f"The existing record was made with other settings {differing} (found, asked); "
            "write to another --out or delete it."
        )


def merge_runs(previous: dict | None, settings: dict, run: dict) -> dict:
    """The record with `run` in it: runs of other seeds kept from `previous` (an earlier session's
    PREFIX.json, same settings), this seed's replaced. Each run names its machine, so a reference
    built across sessions still says where each time was measured."""
    check_settings(previous, settings)
    kept = [r for r in (previous or {}).get("runs", []) if r["seed"] != run["seed"]]
    return {**settings, "runs": sorted([*kept, run], key=lambda r: r["seed"])}


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import torch

    from tlx.machine import machine
    from tlx.run_folder import write_atomic

    f = flags.FLAGS
    torch.set_num_threads(f.threads)
    settings = {"random_init": f.random_init, "steps": f.steps}
    out = Path(f.out).with_suffix(".json")
    previous = json.loads(out.read_text()) if out.exists() else None
    check_settings(previous, settings)  # a clash fails before any training
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed in (int(s) for s in f.seeds.split(",")):
        model, seconds = train_torchvision(seed, f.random_init, f.steps)
        run = {
            "seed": seed, "train_seconds": seconds, "machine": machine(),
            "threads": f.threads, "torch": torch.__version__, **evaluate(model),
        }  # fmt: skip
        print(json.dumps(run), flush=True)
        # Read again: another process may have written its seed to the same record meanwhile.
        previous = json.loads(out.read_text()) if out.exists() else None
        previous = merge_runs(previous, settings, run)
        write_atomic(out, json.dumps(previous, indent=1))  # each seed kept as it finishes
    print(json.dumps(previous, indent=1))


if __name__ == "__main__":
    define_flags()
    cli.run(main, program="experiments.frcnn_reference")
