"""Time to a validation accuracy: tlx feature extraction with the feature cache against the
PyTorch loop a user would write (frozen torchvision backbone, no cache), in one process.

    python -m experiments.time_to_accuracy --targets=0.78,0.8,0.81,0.82 --epochs=12 \
        --out=runs/time_to_accuracy

Task: configs/mnv2_fmnist_feature_extraction.py (packaged torchvision MobileNetV2 ImageNet
weights -> Fashion-MNIST, 1,000 labelled images, 64 px) with deterministic inputs
(`data.augment="none"`), validation on the first `--eval_examples` validation images after every
epoch. Both sides read the same numpy batches (the same examples in the same order), start from
the same weights, use AdamW at the config's learning rate with the same warm-up + cosine schedule
and batch size, and run on the same thread count. Clocks start before the model is built (tlx:
including the feature cache's one pass over the training set). Writes OUT/time_to_accuracy.{md,json}.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from absl import flags

from tlx import cli
from tlx.machine import machine


def define_flags() -> None:
    """Defined only when run as a program, so that importing this module beside other
    experiments (tests do, in one process) claims no flag name."""
    flags.DEFINE_list("targets", ["0.78", "0.80", "0.81", "0.82"], "Validation accuracies to time.")
    flags.DEFINE_integer("epochs", 12, "Epochs at most.")
    flags.DEFINE_integer("eval_examples", 2000, "Validation images per evaluation.")
    flags.DEFINE_string("out", "runs/time_to_accuracy", "Output folder.")


def task_config(epochs: int | None = None):
    from configs.mnv2_fmnist_feature_extraction import get_config

    config = get_config()
    config.data.augment = "none"
    config.data.eval_examples = flags.FLAGS.eval_examples
    config.data.eval_splits = ("validation",)
    steps_per_epoch = math.ceil(int(config.data.train_examples) / int(config.batch_size))
    if epochs:
        config.total_steps = epochs * steps_per_epoch
        config.eval_every = config.checkpoint_every = steps_per_epoch
    return config, steps_per_epoch


def first_reaching(curve: list[tuple[int, float, float]], target: float):
    """(epoch, seconds) of the first evaluation at or above target, else (None, None)."""
    return next(((e, s) for e, acc, s in curve if acc >= target), (None, None))


def run_tlx(epochs: int, workdir: Path) -> dict:
    from tlx.experiment import build_experiment
    from tlx.run_folder import read_metrics
    from tlx.trainer import train

    started = time.perf_counter()
    config, steps_per_epoch = task_config(epochs)
    config.feature_cache = "memory"
    shutil.rmtree(workdir, ignore_errors=True)
    exp = build_experiment(config)
    setup = time.perf_counter() - started
    train(exp, workdir, log=lambda *_: None)
    curve = [
        (r["step"] // steps_per_epoch, r["accuracy"], setup + r["elapsed_seconds"])
        for r in read_metrics(workdir)
        if r["split"] == "validation"
    ]
    return {"framework": "tlx (JAX), feature cache", "curve": curve}


def run_torch(epochs: int) -> dict:
    import numpy as np
    import torch
    import torchvision

    from tlx.experiment import build_experiment
    from tlx.transfer.optim import learning_rate_schedule
    from tlx.zoo.resolve import resolve_image_weights

    started = time.perf_counter()
    torch.manual_seed(0)
    config, steps_per_epoch = task_config(epochs)
    exp = build_experiment(config)  # the same batches as tlx reads
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(resolve_image_weights("torchvision:mobilenet_v2")))
    model.classifier[1] = torch.nn.Linear(1280, 10)
    for p in model.features.parameters():
        p.requires_grad_(False)
    lr = learning_rate_schedule(config.optim, int(config.total_steps))
    head = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(head, lr=1.0, weight_decay=float(config.optim.weight_decay))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: float(lr(step)))
    to_torch = lambda images: torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))

    def evaluate() -> float:
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for batch in exp.eval_batches["validation"]:
                pred = model(to_torch(batch["image"])).argmax(-1).numpy()
                correct += float(((pred == batch["label"]) * batch["weight"]).sum())
                total += float(batch["weight"].sum())
        return correct / total

    curve = []
    for step in range(int(config.total_steps)):
        model.train()
        model.features.eval()  # BatchNorm statistics frozen, as tlx's default
        batch = exp.train_batches[step]
        loss = torch.nn.functional.cross_entropy(
            model(to_torch(batch["image"])), torch.from_numpy(batch["label"]).long()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if (step + 1) % steps_per_epoch == 0:
            curve.append(((step + 1) // steps_per_epoch, evaluate(), time.perf_counter() - started))
    return {"framework": f"PyTorch {torch.__version__} loop, no cache", "curve": curve}


def main(argv):
    del argv
    import torch

    torch.set_num_threads(2)  # the same cores XLA uses here
    out = Path(flags.FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [run_tlx(flags.FLAGS.epochs, out / "tlx"), run_torch(flags.FLAGS.epochs)]
    targets = [float(t) for t in flags.FLAGS.targets]
    lines = [
        f"Machine: {machine()}. Validation accuracy on the first {flags.FLAGS.eval_examples} "
        "validation images after every epoch; seconds from the start of set-up.",
        "",
        "| framework | "
        + " | ".join(f"s to {t} (epoch)" for t in targets)
        + " | best val acc | s, all epochs |",
        "|---|" + "---|" * (len(targets) + 2),
    ]
    for row in rows:
        row["to_target"] = {t: first_reaching(row["curve"], t) for t in targets}
        cells = [f"{s:.1f} ({e})" if e else "not reached" for e, s in row["to_target"].values()]
        best = max(a for _, a, _ in row["curve"])
        lines.append(
            f"| {row['framework']} | " + " | ".join(cells) + f" | {best:.4f} | "
            f"{row['curve'][-1][2]:.1f} |"
        )
    ratios = []
    for t in targets:
        (_, tlx_s), (_, torch_s) = rows[0]["to_target"][t], rows[1]["to_target"][t]
        if tlx_s and torch_s:
            ratios.append(f"{t}: {torch_s / tlx_s:.2f}x")
    lines.append("\nPyTorch time / tlx time, per target: " + ", ".join(ratios))
    report = "\n".join(lines) + "\n"
    (out / "time_to_accuracy.md").write_text(report)
    (out / "time_to_accuracy.json").write_text(json.dumps(rows, indent=1))
    print(report)


if __name__ == "__main__":
    define_flags()
    cli.run(main, program="experiments.time_to_accuracy")
