"""Train-step speed of tlx against PyTorch doing the same plan, in one process, as ratios.

    python -m experiments.speed_vs_torch --models=mobilenet_v2,vgg16 --sizes=64,112 \
        --plans=feature_extraction,freeze_half,finetune --batch_size=8 --out=runs/speed

For each (model, input size, plan): tlx's per-stage jitted step, the trainer's own (a
tlx.stage_program.StageProgram: gradient only w.r.t. the trainable groups, Adam, BatchNorm
statistics frozen) and torchvision's model with `requires_grad=False` on the same frozen groups
(Adam over the trainable ones, BatchNorm layers in eval mode), same batch, same thread count,
float32. Median of `--steps` timed steps after `--warmup` untimed ones. Writes
OUT/speed.json and OUT/speed.md; the machine is named in both.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from pathlib import Path

from absl import flags

from tlx import cli

_MODELS = flags.DEFINE_list("models", ["mobilenet_v2", "vgg16"], "Models to time.")
_SIZES = flags.DEFINE_list("sizes", ["64"], "Square input sizes.")
_PLANS = flags.DEFINE_list(
    "plans", ["feature_extraction", "freeze_half", "finetune"], "Plans to time."
)
_BATCH = flags.DEFINE_integer("batch_size", 8, "Examples per step.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps (median reported).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (compilation, allocator).")
_OUT = flags.DEFINE_string("out", "runs/speed", "Output folder.")

# tlx architecture + kwargs, torchvision constructor, and torchvision's module prefix per tlx group.
MODELS = {
    "mobilenet_v2": ("mobilenet_v2", {}, "mobilenet_v2"),
    "vgg16": ("vgg", {"depth": 16}, "vgg16"),
    "resnet50": ("resnet", {"depth": 50}, "resnet50"),
}


def _median(fn, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def trainable_groups(groups: list[str], plan: str) -> list[str]:
    if plan == "feature_extraction":
        return groups[-1:]
    if plan == "freeze_half":
        return groups[len(groups) // 2 :]
    if plan == "finetune":
        return list(groups)
    raise ValueError(f"unknown plan {plan!r}")


def image_bundle(model_name: str, size: int | None = None, dtype=None, **module_kwargs):
    """tlx's from-scratch bundle for one of MODELS, 10 classes; `dtype` is the compute dtype
    (`model.compute_dtype`), `module_kwargs` go to the model's constructor."""
    import jax.numpy as jnp

    from tlx.zoo.registry import build_model

    arch, kwargs, _ = MODELS[model_name]
    cfg = {"name": "image_classifier", "arch": arch, "checkpoint": ""}
    cfg["kwargs"] = {**kwargs, **module_kwargs}
    if dtype is not None:
        cfg["compute_dtype"] = jnp.dtype(dtype).name
    if size:
        cfg["image_size"] = size
    return build_model(cfg, num_classes=10)


def tlx_stage(
    bundle, plan: str, learning_rate: float = 1e-4, train_batches=None, task=None, variables=None
):
    """(program, carry, mode): the trainer's own compiled step for the stage of `plan` on any
    bundle, from tlx.stage_program as tlx.trainer builds it (gradient only w.r.t. the trainable
    groups, Adam at a constant rate on them, frozen groups set to zero, only trainable parameters
    and changed state handed back, their buffers donated), on one device. `train_batches`, a
    random-access dataset, becomes `program.train_batches`; `mode.put_batch` places a batch.
    `task`: what scores the outputs (default classification; a detector's Detection task).
    `variables`: the initial weights (default: `bundle.init` at key 0).
    `program.step(*carry, batch, rng, step_number)`; then `carry = next_carry(carry, output)`."""
    import jax

    from tlx.parallel_modes import JitMode
    from tlx.stage_program import StagePrograms
    from tlx.transfer.groups import assign_groups
    from tlx.transfer.optim import StageOptimizers
    from tlx.transfer.plans import Plan, Stage
    from tlx.tree import flatten

    if variables is None:
        variables = jax.jit(bundle.init)(jax.random.key(0))
    flat = flatten(variables["params"])
    state = flatten({k: v for k, v in variables.items() if k != "params"})
    group_of = assign_groups(list(flat), bundle.groups)
    train = trainable_groups(bundle.group_names, plan)
    stage = Stage(0, {g: (1.0 if g in train else None) for g in bundle.group_names})
    tlx_plan = Plan(plan, (stage,))
    optim = {"learning_rate": learning_rate, "decay": "constant"}
    tx = StageOptimizers(tlx_plan, group_of, optim, total_steps=1)(0)
    shapes = {p: jax.ShapeDtypeStruct(v.shape, v.dtype) for p, v in flat.items()}
    mode = JitMode(jax.devices()[:1])
    flat, state, opt_state = mode.replicate((flat, state, jax.jit(tx.init)(flat)))
    tasks = {} if task is None else {"task": task}
    programs = StagePrograms.for_model(
        bundle, tlx_plan, group_of, shapes, mode, train_batches=train_batches, **tasks
    )
    program, trainable, _ = programs.start(0, flat, state, opt_state, tx)
    return program, [trainable, program.read_frozen, program.state_for_step(state), opt_state], mode


def next_carry(carry: list, output) -> list:
    """The step's output folded into its carry (trainable, frozen, state, opt_state), as the
    trainer folds it."""
    trainable, state_updates, opt_state, _ = output
    return [trainable, carry[1], {**carry[2], **state_updates}, opt_state]


def step_runner(program, carry: list):
    """run(batch): one step of `program` (from tlx_stage) on a placed batch, waited for, its
    output folded into `carry` in place as the trainer folds it; step numbers count from 0."""
    import itertools

    import jax

    step_number = itertools.count()

    def run(batch):
        out = program.step(*carry, batch, jax.random.key(1), next(step_number))
        jax.block_until_ready(out)
        carry[:] = next_carry(carry, out)

    return run


def use_flag_defaults(defaults: dict) -> None:
    """Sets the shared flags (--out, --steps, --warmup) to one command's defaults where the user
    gave none; in main, not at import, so that two commands' modules can be imported together."""
    for name, value in defaults.items():
        if not flags.FLAGS[name].present:
            flags.FLAGS[name].value = value


def time_tlx(model_name: str, size: int, plan: str, batch: int, steps: int, warmup: int):
    import numpy as np

    program, carry, _ = tlx_stage(image_bundle(model_name, size), plan)
    rng = np.random.default_rng(0)
    batch_data = {
        "image": rng.standard_normal((batch, size, size, 3), np.float32),
        "label": rng.integers(0, 10, batch).astype(np.int32),
    }
    run = step_runner(program, carry)
    return _median(lambda: run(batch_data), steps, warmup)


def torch_groups(model_name: str, bundle, names: list[str]) -> dict[str, str]:
    """torchvision parameter name -> tlx group, through tlx's own conversion rule table."""
    import jax

    from tlx.transfer.groups import assign_groups
    from tlx.tree import flatten

    if model_name == "mobilenet_v2":
        from tlx.weights.torchvision_mobilenet import MOBILENET_V2_RULES as rules
    elif model_name == "vgg16":
        from tlx.weights.torchvision_vgg import vgg_rules

        rules = vgg_rules(16, False)
    else:
        from tlx.weights.torchvision_resnet import RESNET_RULES as rules
    shapes = flatten(jax.eval_shape(bundle.init, jax.random.key(0))["params"])
    tlx_group = assign_groups(list(shapes), bundle.groups)
    out = {}
    for name in names:
        for rule in rules:
            match = re.fullmatch(rule.pattern, name)
            if match and rule.target:
                out[name] = tlx_group[match.expand(rule.target).removeprefix("params/")]
                break
        else:
            raise KeyError(f"no tlx group for torchvision parameter {name!r}")
    return out


def freeze_like_tlx(model, group_of: dict[str, str], train):
    """The torch side of a plan: `requires_grad=False` on the frozen groups' parameters (named in
    `group_of`), BatchNorm statistics frozen as tlx's batchnorm="frozen", Adam over the rest."""
    import torch

    for name, p in model.named_parameters():  # the same groups frozen as in tlx
        p.requires_grad_(group_of[name] in train)
    model.train()
    for m in model.modules():  # statistics frozen, as tlx's batchnorm="frozen"
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)


def torchvision_model(model_name: str, plan: str, model=None):
    """(torchvision model with 10 classes, its Adam) frozen as tlx freezes `plan`; `model`: the
    randomly initialised torchvision model to use (default: a new one)."""
    import torchvision

    _, _, tv_name = MODELS[model_name]
    bundle = image_bundle(model_name)
    train = set(trainable_groups(bundle.group_names, plan))
    if model is None:
        model = getattr(torchvision.models, tv_name)(weights=None, num_classes=10)
    group_of = torch_groups(model_name, bundle, [n for n, _ in model.named_parameters()])
    return model, freeze_like_tlx(model, group_of, train)


def time_torch(model_name: str, size: int, plan: str, batch: int, steps: int, warmup: int):
    import torch

    model, opt = torchvision_model(model_name, plan)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 10, (batch,))

    def run():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return _median(run, steps, warmup)


def machine() -> str:
    from tlx.machine import machine as machine_line

    return machine_line()


def main(argv):
    del argv
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for model in _MODELS.value:
        for size in map(int, _SIZES.value):
            for plan in _PLANS.value:
                args = (model, size, plan, _BATCH.value, _STEPS.value, _WARMUP.value)
                ours, theirs = time_tlx(*args), time_torch(*args)
                row = dict(model=model, size=size, plan=plan, batch=_BATCH.value, tlx_s=ours)
                row.update(torch_s=theirs, speedup=theirs / ours)
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), "precision": "float32", "rows": rows}
    (out / "speed.json").write_text(json.dumps(payload, indent=1))
    lines = [
        f"Train step, float32, median of {_STEPS.value}; machine: {machine()}",
        "",
        "| model | size | plan | batch | tlx s/step | PyTorch s/step | tlx speed vs PyTorch |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['plan']} | {r['batch']} | {r['tlx_s']:.3f} | "
            f"{r['torch_s']:.3f} | {r['speedup']:.2f}x |"
        )
    (out / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    cli.run(main, program="experiments.speed_vs_torch")
