"""What a benchmark run times: its config (a profile with the command line's overrides laid over
it) and its cells, most important first."""

from __future__ import annotations

import dataclasses

from experiments.bench.models import known_models

PRECISIONS = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    models: tuple[str, ...]
    plans: tuple[str, ...]
    batch_sizes: dict[str, tuple[int, ...]]  # per model
    precisions: tuple[str, ...]
    steps: int
    warmup: int
    image_size: int
    seq_len: int
    torch: bool
    time_budget_s: float | None = None
    slow_step_s: float | None = None
    torch_channels_last: bool = True
    tf32: bool = True
    prefetch_depth: int = 2
    # With torch: > 1 sets both frameworks up at once and times them in this many alternating
    # rounds (A B B A ...), so that drift in the machine's speed hits both alike.
    rounds: int = 1
    profile: str = "custom"
    # The run's planned length (experiments.bench.plan): the timed steps per cell are cut, down
    # to plan_min_steps, until every cell's estimate fits; None keeps `steps`.
    plan_budget_s: float | None = None
    plan_min_steps: int = 3
    # > 0: every tlx step is lowered, then compiled on this many threads, before any is timed
    # (compiling is most of a GPU cell's time and nothing is timed meanwhile).
    compile_workers: int = 0
    # On an accelerator, also count each step's FLOPs on its CPU lowering (what the compiled
    # program's library calls hide: flops.step_flops). Tracing it again costs seconds a cell;
    # without it, experiments.bench_recount counts them afterwards on any CPU.
    count_flops_on_cpu: bool = True
    # Single cells beyond the product of models x plans x batches x precisions, (model, plan,
    # batch, precision) each, run after the first batch size's cells.
    extra_cells: tuple[tuple[str, str, int, str], ...] = ()
    # A jax.profiler trace of `profile_steps` more tlx steps of every cell, after its timed ones,
    # in profile_dir/<cell>/ (experiments.bench.trace), with the device's busy share of them.
    profile_dir: str | None = None
    profile_steps: int = 3


PROFILES = {
    # At most 10 minutes on 2 CPU cores (about 3 with torch).
    "cpu_small": BenchConfig(
        models=("mobilenet_v2", "bert_mini"),
        plans=("feature_extraction", "finetune"),
        batch_sizes={"mobilenet_v2": (16,), "bert_mini": (16,)},
        precisions=("float32",),
        steps=20,
        warmup=3,
        image_size=64,
        seq_len=64,
        torch=True,
        time_budget_s=480,
        profile="cpu_small",
    ),
    # Issue 4 section 5 on the project's 2-core CPU: VGG16 and BERT-base in every regime at both
    # precisions. One image size a run (--image_size=112 for the second), and XLA flags are
    # process-wide, so VGG16 runs apart from BERT (see experiments/results/README.md). PyTorch's
    # bfloat16 autocast has no native kernels on a CPU without AVX512-BF16 / AMX and takes tens of
    # seconds a step there: slow_step_s times such a framework on one step after one warm-up.
    "cpu_transfer": BenchConfig(
        models=("vgg16", "bert_base"),
        plans=("feature_extraction", "freeze_half", "finetune"),
        batch_sizes={"vgg16": (8,), "bert_base": (8,)},
        precisions=("float32", "bfloat16"),
        steps=10,
        warmup=2,
        image_size=224,
        seq_len=128,
        torch=True,
        slow_step_s=20.0,
        rounds=5,  # a shared 2-core VM drifts by ±10% over a minute: interleave
        profile="cpu_transfer",
    ),
    # Issue 24: every cell in at most 8 minutes on one H100/H200, compilation included. The
    # plan (experiments.bench.plan) cuts the timed steps, not the cells, to fit 7.5 minutes of
    # estimates; tlx's steps compile on 12 threads first; the budget still stops starting cells
    # past 7.75 minutes whatever the estimates said; the FLOPs are recounted afterwards
    # (experiments.bench_recount) rather than traced again on the device's time.
    "gpu": BenchConfig(
        models=("resnet50", "bert_base", "vgg16", "mobilenet_v2"),
        plans=("finetune", "feature_extraction"),
        batch_sizes={
            "resnet50": (64, 256),
            "bert_base": (32, 128),
            "vgg16": (64, 256),
            "mobilenet_v2": (64, 256),
        },
        precisions=("bfloat16", "float32"),
        steps=20,
        warmup=2,
        image_size=224,
        seq_len=128,
        torch=True,
        time_budget_s=465,
        plan_budget_s=450,
        plan_min_steps=5,
        compile_workers=12,
        count_flops_on_cpu=False,
        # BERT's attention (item 1): the fused kernel without attention dropout, and the eager
        # path without it, beside bert_base's eager path with it (HF's semantics).
        extra_cells=(
            ("bert_base_fused", "finetune", 32, "bfloat16"),
            ("bert_base_nodrop", "finetune", 32, "bfloat16"),
        ),
        profile="gpu",
    ),
}


def with_overrides(cfg: BenchConfig, **given) -> BenchConfig:
    """`cfg` with the given fields replaced; `batch_sizes` is one list for every model, and a model
    the profile has no batch sizes for gets its first model's. Given models drop the profile's
    extra cells."""
    if "models" in given and "extra_cells" not in given:
        given["extra_cells"] = ()  # the profile's extras are for its own models
    models = tuple(given.pop("models", cfg.models))
    sizes = given.pop("batch_sizes", None)
    fallback = next(iter(cfg.batch_sizes.values()))
    if sizes is not None:
        batch_sizes = {m: tuple(int(b) for b in sizes) for m in models}
    else:
        batch_sizes = {m: cfg.batch_sizes.get(m, fallback) for m in models}
    for name in ("plans", "precisions"):
        if name in given:
            given[name] = tuple(given[name])
    return dataclasses.replace(cfg, models=models, batch_sizes=batch_sizes, **given)


def validate(cfg: BenchConfig) -> None:
    """Fail before any compilation on names that could never run (plans fail per cell)."""
    models = [*cfg.models, *(extra[0] for extra in cfg.extra_cells)]
    unknown = [m for m in models if m not in known_models()]
    if unknown:
        raise ValueError(f"unknown models {unknown}; known: {known_models()}")
    bad = [p for p in cfg.precisions if p not in PRECISIONS]
    if bad:
        raise ValueError(f"unknown precisions {bad}; use float32 and/or bfloat16")
    if cfg.steps < 1 or cfg.warmup < 1:
        raise ValueError(
            "--steps and --warmup must be at least 1 (warm-up absorbs first-call costs)"
        )
    if cfg.compile_workers < 0 or cfg.plan_min_steps < 1:
        raise ValueError(
            f"--compile_workers={cfg.compile_workers} must be >= 0 and plan_min_steps="
            f"{cfg.plan_min_steps} >= 1"
        )
    if cfg.rounds < 1 or cfg.rounds > cfg.steps:
        raise ValueError(
            f"--rounds={cfg.rounds} must be between 1 and --steps={cfg.steps} (each round "
            "times at least one step of each framework)"
        )


@dataclasses.dataclass(frozen=True)
class Cell:
    model: str
    plan: str
    batch: int
    precision: str


def cell_order(cfg: BenchConfig) -> list[Cell]:
    """Most important first: every model's first batch size before any second one; within it the
    profile's first two plans (finetune, feature_extraction) for every model before the others;
    then models and precisions in the profile's order (ResNet-50 and BERT-base lead on GPU);
    the extra cells after the first batch size's."""

    precisions = list(dict.fromkeys(PRECISIONS[p] for p in cfg.precisions))

    def key(cell: Cell):
        batch_rank = cfg.batch_sizes[cell.model].index(cell.batch)
        plan_rank = cfg.plans.index(cell.plan)
        model_rank = cfg.models.index(cell.model)
        precision_rank = precisions.index(cell.precision)
        return (batch_rank, plan_rank >= 2, model_rank, plan_rank, precision_rank)

    cells = [
        Cell(m, p, b, prec)
        for m in cfg.models
        for p in cfg.plans
        for b in cfg.batch_sizes[m]
        for prec in precisions
    ]
    cells = sorted(cells, key=key)
    first_batch = sum(cfg.batch_sizes[c.model].index(c.batch) == 0 for c in cells)
    extras = [Cell(m, p, int(b), PRECISIONS[prec]) for m, p, b, prec in cfg.extra_cells]
    return cells[:first_batch] + extras + cells[first_batch:]
