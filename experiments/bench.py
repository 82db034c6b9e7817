"""Accelerator benchmark: tlx train steps over models x plans x batch sizes x precisions.

    python -m experiments.bench                                  # --profile=cpu_small, ~3 min
    python -m experiments.bench --profile=gpu --torch --out=runs/bench_gpu     # one H100/H200
    python -m experiments.bench --models=mobilenet_v2 --plans=finetune --batch_sizes=8 \
        --precisions=float32,bfloat16 --steps=5 --warmup=2 --image_size=32 --notorch

A profile names the cells and the step counts; each flag given on the command line overrides its
field (--models, --plans, --batch_sizes, --precisions, --steps, --warmup, --image_size, --seq_len,
--torch, --time_budget_s, --rounds). --models, --plans, --steps, --warmup and --out are the flags that
experiments.speed_vs_torch defines (its defaults are ignored here: the profile decides).

Each cell (model, plan, batch, precision) is tlx's per-stage jitted train step (gradient only
w.r.t. the plan's trainable groups, Adam, BatchNorm statistics frozen; see
speed_vs_torch.tlx_train_setup), fed from a host-side prefetching iterator, and reports:
compile time (trace + lower + XLA compile); step time median / p10 / p90 over --steps timed steps
after --warmup untimed ones, every step synchronised; examples/s (and tokens/s for text); MFU =
XLA cost-analysis FLOPs of the step / median step time / the device's peak (PEAKS); peak memory
(GPU: the allocator's high-water mark, which JAX cannot reset, so it is the process's so far; CPU:
the process's max RSS) and XLA's own estimate for the step (arguments + outputs + temporaries);
and the fraction of step time spent blocked in next() on the input iterator.
With --torch the same model and plan run in PyTorch on the same device (torchvision models,
transformers' BertForSequenceClassification; frozen groups requires_grad=False, Adam, BatchNorm in
eval mode; bfloat16 = torch.autocast) and the tlx/torch throughput ratio is reported. With
--rounds=R > 1 (the cpu_transfer profile: 5) both are set up at once and timed in R alternating
rounds (A B B A ..., an untimed step leading each later round), so that a machine drifting over
minutes slows both alike; both models are then in memory together.

bfloat16 means compute in bfloat16 with float32 parameters (the tlx modules' `dtype`). On GPUs
float32 matmuls and convolutions use TF32 by default in JAX; --tf32 (default) lets torch do the
same and takes MFU against the TF32 peak; --notf32 forces full float32 in both.

A failing cell (e.g. out of memory) is recorded as an error and the run goes on; OUT/bench.json,
OUT/bench.md and OUT/bench.png are rewritten after every cell, so a killed run leaves results.
Cells run most important first (see cell_order) and, past --time_budget_s, are recorded as skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import json
import os
import platform
import queue
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from absl import flags

from experiments import speed_vs_torch as svt
from tlx import cli
from tlx.metrics import peak_memory_bytes, process_max_rss_bytes

# Shared with speed_vs_torch (defined there, so importing both does not define them twice).
_MODELS, _PLANS, _STEPS, _WARMUP, _OUT = (
    flags.FLAGS[name] for name in ("models", "plans", "steps", "warmup", "out")
)
_PROFILE = flags.DEFINE_enum(
    "profile", "cpu_small", ["cpu_small", "cpu_transfer", "gpu"], "Cells and step counts."
)
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", None, "Batch sizes, for every model.")
_PRECISIONS = flags.DEFINE_list("precisions", None, "float32 and/or bfloat16.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Square input size of the CNNs.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", None, "Tokens per example for BERT.")
_TORCH = flags.DEFINE_boolean("torch", None, "Also time the same cells in PyTorch.")
_TIME_BUDGET = flags.DEFINE_float(
    "time_budget_s", None, "Start no cell past this many seconds (the rest are 'skipped')."
)
_SLOW_STEP = flags.DEFINE_float(
    "slow_step_s",
    None,
    "A framework whose first warm-up step takes longer than this is timed on one step only.",
)
_CHANNELS_LAST = flags.DEFINE_boolean(
    "torch_channels_last", True, "PyTorch CNNs run in channels_last (NHWC) memory format."
)
_TF32 = flags.DEFINE_boolean("tf32", True, "GPU float32: allow TF32 (JAX's default) in both.")
_ROUNDS = flags.DEFINE_integer(
    "rounds",
    None,
    "With --torch: time both frameworks in this many alternating rounds (1: one after the other).",
)
_MEASURE_CPU_PEAK = flags.DEFINE_boolean(
    "measure_cpu_peak", False, "On CPU, time large matmuls first and use them as the peak."
)

PRECISIONS = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}

# Dense peak FLOP/s per precision, first substring of jax's device_kind that matches wins.
# Vendor figures without sparsity; "tf32" is what float32 matmuls run at on GPUs by default.
# TPUs run float32 matmuls as bfloat16 passes by default, so they fall back to the bfloat16 peak.
H100_SXM = {"bfloat16": 989e12, "tf32": 494.7e12, "float32": 67e12}
PEAKS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"bfloat16": 756e12, "tf32": 378e12, "float32": 51e12}),
    ("H100", H100_SXM),
    ("H200", H100_SXM),  # same compute as the H100 SXM, more and faster memory
    ("A100", {"bfloat16": 312e12, "tf32": 156e12, "float32": 19.5e12}),
    ("TPU v4", {"bfloat16": 275e12}),
    ("TPU v5 lite", {"bfloat16": 197e12}),  # v5e's device_kind
    ("TPU v5e", {"bfloat16": 197e12}),
    ("TPU v5p", {"bfloat16": 459e12}),
    ("TPU v5", {"bfloat16": 459e12}),  # v5p's device_kind
]
# This project's 2-core AMD EPYC (AVX2), measured by --measure_cpu_peak (best of 5 timed
# 2048x2048 matmuls after a warm-up; jax 0.10.2, torch 2.14) on an otherwise idle machine,
# 2026-11-26, the best of two runs: float32 150 GFLOP/s (the other run: 120), bfloat16 112 (108;
# jax's: torch's CPU bfloat16 matmul runs at 0.3). With other processes running it measured 57
# and 52: the machine drifts by 2x and more.
CPU_PEAK = {"float32": 150e9, "bfloat16": 112e9}


# --- models -------------------------------------------------------------------------------------

VOCAB_SIZE = 30522  # bert-base-uncased's (and MiniLM's) vocabulary
BERT_SIZES = {  # layers, hidden, heads, intermediate
    "bert_mini": (6, 384, 12, 1536),  # MiniLM-L6-sized, random init
    "bert_base": (12, 768, 12, 3072),
}
# tlx group -> the module prefix of transformers' BertForSequenceClassification.
BERT_TORCH_PREFIXES = {
    "embeddings": "bert.embeddings.",
    "pooler": "bert.pooler.",
    "head": "classifier.",
}


def is_text(model: str) -> bool:
    return model in BERT_SIZES


def known_models() -> list[str]:
    return [*svt.MODELS, *BERT_SIZES]


def bert_bundle(model: str, dtype):
    """A random-init BERT classifier (2 labels) as a ModelBundle, like tlx.models.text builds one
    from a checkpoint."""
    from tlx.models.bert import BertConfig, BertForSequenceClassification, bert_param_groups
    from tlx.models.registry import ModelBundle
    from tlx.models.text import bert_forward_and_init

    layers, hidden, heads, intermediate = BERT_SIZES[model]
    config = BertConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
    )
    module = BertForSequenceClassification(config, num_labels=2, dtype=dtype)
    forward, init = bert_forward_and_init(module)
    return ModelBundle(module, bert_param_groups(layers), forward, init)


def tlx_bundle(model: str, precision: str, cfg: BenchConfig):
    import jax.numpy as jnp

    dtype = jnp.dtype(precision)
    if is_text(model):
        return bert_bundle(model, dtype)
    return svt.image_bundle(model, cfg.image_size, dtype=dtype)


def torch_bert_group(name: str) -> str:
    """transformers parameter name -> tlx group name."""
    if name.startswith("bert.encoder.layer."):
        return f"layer_{name.split('.')[3]}"
    for group, prefix in BERT_TORCH_PREFIXES.items():
        if name.startswith(prefix):
            return group
    raise KeyError(f"no tlx group for transformers parameter {name!r}")


def torch_bert(model: str, plan: str):
    """(transformers BertForSequenceClassification, random init, its Adam) frozen as tlx's plan."""
    import transformers

    from tlx.models.bert import bert_param_groups

    layers, hidden, heads, intermediate = BERT_SIZES[model]
    config = transformers.BertConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        num_labels=2,
    )
    net = transformers.BertForSequenceClassification(config)
    train = set(svt.trainable_groups([g for g, _ in bert_param_groups(layers)], plan))
    group_of = {name: torch_bert_group(name) for name, _ in net.named_parameters()}
    return net, svt.freeze_like_tlx(net, group_of, train)


# --- profiles -----------------------------------------------------------------------------------


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
    # At most 8 minutes on one H100/H200, compilation included: every cell compiles its own step,
    # so not all 48 fit; the budget stops starting cells in time and the order puts the
    # important ones first.
    "gpu": BenchConfig(
        models=("resnet50", "bert_base", "vgg16", "mobilenet_v2"),
        plans=("finetune", "feature_extraction", "freeze_half"),
        batch_sizes={
            "resnet50": (64, 256),
            "bert_base": (32, 128),
            "vgg16": (64, 128),
            "mobilenet_v2": (64, 256),
        },
        precisions=("float32", "bfloat16"),
        steps=20,
        warmup=3,
        image_size=224,
        seq_len=128,
        torch=True,
        time_budget_s=390,
        profile="gpu",
    ),
}


def config_from_flags() -> BenchConfig:
    """The profile with every flag that was given on the command line laid over it."""
    holders = {
        "models": _MODELS,
        "plans": _PLANS,
        "batch_sizes": _BATCH_SIZES,
        "precisions": _PRECISIONS,
        "steps": _STEPS,
        "warmup": _WARMUP,
        "image_size": _IMAGE_SIZE,
        "seq_len": _SEQ_LEN,
        "torch": _TORCH,
        "time_budget_s": _TIME_BUDGET,
        "slow_step_s": _SLOW_STEP,
        "rounds": _ROUNDS,
    }
    given = {name: holder.value for name, holder in holders.items() if holder.present}
    return with_overrides(
        PROFILES[_PROFILE.value],
        tf32=_TF32.value,
        torch_channels_last=_CHANNELS_LAST.value,
        **given,
    )


def with_overrides(cfg: BenchConfig, **given) -> BenchConfig:
    """`cfg` with the given fields replaced; `batch_sizes` is one list for every model, and a model
    the profile has no batch sizes for gets its first model's."""
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
    unknown = [m for m in cfg.models if m not in known_models()]
    if unknown:
        raise ValueError(f"unknown models {unknown}; known: {known_models()}")
    bad = [p for p in cfg.precisions if p not in PRECISIONS]
    if bad:
        raise ValueError(f"unknown precisions {bad}; use float32 and/or bfloat16")
    if cfg.steps < 1 or cfg.warmup < 1:
        raise ValueError(
            "--steps and --warmup must be at least 1 (warm-up absorbs first-call costs)"
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
    then models and precisions in the profile's order (ResNet-50 and BERT-base lead on GPU)."""

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
    return sorted(cells, key=key)


# --- input --------------------------------------------------------------------------------------


class PrefetchedBatches:
    """Host-side input as a training loop sees it: a daemon thread cycles through a few numpy
    batches made up front into a bounded queue, and the loop times its blocking next(). Making the
    batches up front keeps numpy's random generator out of the figure; what remains is the hand-over
    (and, in the step, the host-to-device copy)."""

    def __init__(self, make_batch: Callable[[int], dict], pool_size: int = 2, depth: int = 2):
        self._pool = [make_batch(seed) for seed in range(pool_size)]
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _fill(self):
        for batch in itertools.cycle(self._pool):
            while not self._stop.is_set():
                try:
                    self._queue.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set():
                return

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return self._queue.get()

    def close(self):
        self._stop.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def numpy_batch(model: str, batch: int, cfg: BenchConfig, seed: int, torch_layout: bool) -> dict:
    """Random inputs in each framework's own layout: NHWC float32 images / int32 ids for tlx,
    NCHW images / int64 ids for torch."""
    rng = np.random.default_rng(seed)
    int_type = np.int64 if torch_layout else np.int32
    if is_text(model):
        shape = (batch, cfg.seq_len)
        return {
            "input_ids": rng.integers(1, VOCAB_SIZE, shape).astype(int_type),
            "attention_mask": np.ones(shape, int_type),
            "token_type_ids": np.zeros(shape, int_type),
            "label": rng.integers(0, 2, batch).astype(int_type),
        }
    size = cfg.image_size
    shape = (batch, 3, size, size) if torch_layout else (batch, size, size, 3)
    return {
        "image": rng.standard_normal(shape, np.float32),
        "label": rng.integers(0, 10, batch).astype(int_type),
    }


# --- timing -------------------------------------------------------------------------------------


class StepTimer:
    """Times one framework's steps: warm-up, then timed steps in one or several calls (rounds
    interleaved with another framework's). The time of a step includes its blocking next(). A
    first step slower than `slow_step_s` ends the warm-up and leaves one timed step in all (a
    figure to within the noise, in a bounded time)."""

    def __init__(self, run_step: Callable[[dict], None], batches, slow_step_s=None):
        self.run_step, self.batches, self.slow_step_s = run_step, batches, slow_step_s
        self.first_step_s, self.warmup, self.slow = None, 0, False
        self.error: BaseException | None = None  # set by time_interleaved
        self.totals: list[float] = []
        self.waits: list[float] = []

    def warm(self, steps: int) -> None:
        for i in range(steps):
            start = time.perf_counter()
            self.run_step(next(self.batches))
            self.warmup += 1
            if i == 0 and self.first_step_s is None:
                self.first_step_s = time.perf_counter() - start
                if self.slow_step_s is not None and self.first_step_s > self.slow_step_s:
                    self.slow = True
                    return

    def rewarm(self, steps: int) -> None:
        """Untimed steps between timed ones (not for a slow framework: it has its one step)."""
        for _ in range(0 if self.slow else steps):
            self.run_step(next(self.batches))

    def timed(self, steps: int) -> None:
        if self.slow:
            steps = min(steps, 1 - len(self.totals))
        for _ in range(steps):
            start = time.perf_counter()
            batch = next(self.batches)
            got = time.perf_counter()
            self.run_step(batch)
            self.totals.append(time.perf_counter() - start)
            self.waits.append(got - start)

    def run(self, warmup: int, steps: int) -> StepTimer:
        """All of it at once: `warmup` steps, then `steps` timed ones."""
        self.warm(warmup)
        self.timed(steps)
        return self

    def result(self) -> dict:
        p10, median, p90 = np.percentile(self.totals, [10, 50, 90])
        return {
            "first_step_s": self.first_step_s,
            "step_median_s": float(median),
            "step_p10_s": float(p10),
            "step_p90_s": float(p90),
            "step_mean_s": statistics.fmean(self.totals),
            "input_wait_fraction": sum(self.waits) / sum(self.totals),
            "steps": len(self.totals),
            "warmup": self.warmup,
        }


def time_steps(
    run_step: Callable[[dict], None],
    batches,
    steps: int,
    warmup: int,
    slow_step_s: float | None = None,
) -> dict:
    """`warmup` steps, then `steps` timed ones (see StepTimer); `run_step` must return only once
    the step is done."""
    return StepTimer(run_step, batches, slow_step_s).run(warmup, steps).result()


def time_interleaved(timers: Sequence[StepTimer], steps: int, warmup: int, rounds: int) -> None:
    """Warm every timer, then `rounds` rounds of about steps/rounds timed steps each, in turn, the
    order reversed every other round (A B B A ...): a machine whose speed drifts over minutes
    then slows both alike, instead of whichever ran second. Each round after the first starts
    with an untimed step. A timer whose step raises keeps the exception in `.error` and is left
    out from then on; the others go on."""

    def attempt(timer: StepTimer, method: str, n: int) -> None:
        if timer.error is None:
            try:
                getattr(timer, method)(n)
            except Exception as exc:
                timer.error = exc

    for timer in timers:
        attempt(timer, "warm", warmup)
    for r in range(rounds):
        share = steps // rounds + (r < steps % rounds)  # `steps` in all
        for timer in timers if r % 2 == 0 else list(reversed(timers)):
            if r > 0 and len(timers) > 1:
                # One untimed step first: the other framework's threads spin on for a while
                # after its last step (OpenMP's and Eigen's wait policies) and would slow it.
                attempt(timer, "rewarm", 1)
            attempt(timer, "timed", share)


def add_throughput(result: dict, batch: int, tokens_per_example: int | None) -> dict:
    result["examples_per_s"] = batch / result["step_median_s"]
    result["tokens_per_s"] = (
        result["examples_per_s"] * tokens_per_example if tokens_per_example else None
    )
    return result


def first_cost(analysis) -> dict:
    """cost_analysis() is a dict in recent jax, a list with one dict per program in older ones."""
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    return dict(analysis or {})


def cpu_lowering_flops(step, args) -> float | None:
    """FLOPs of `step(*args)` counted on its lowering for the CPU: the same program before any
    backend hands work to libraries. For accelerators, whose compiled program the analysis cannot
    see into."""
    import jax

    try:
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), args
        )
        lowered = step.trace(*abstract).lower(lowering_platforms=("cpu",))
        return first_cost(lowered.cost_analysis()).get("flops") or None
    except Exception:
        return None


def step_flops(compiled, lowered, cpu_count=None) -> tuple[float | None, str | None]:
    """FLOPs of one step from XLA's cost analysis: the largest of the compiled, the lowered and
    (`cpu_count`, on accelerators) the CPU lowering's counts. On GPU the compiled program hands
    convolutions and matmuls to cuDNN and cuBLAS custom calls that the analysis cannot count
    (ResNet-50 finetune at batch 64: 11.6 GFLOP counted against 1,509 real), and the GPU lowering
    had no count at all on the H200 of 2026-11-26; the CPU lowering of the same step counts them."""
    counts = {"cpu_lowering": float(cpu_count)} if cpu_count else {}
    for source, stage in (("compiled", compiled), ("lowered", lowered)):
        try:
            flops = first_cost(stage.cost_analysis()).get("flops")
        except Exception:  # some backends do not implement it
            flops = None
        if flops and flops > 0:
            counts[source] = float(flops)
    if not counts:
        return None, None
    source = max(counts, key=counts.get)
    return counts[source], source


def xla_step_bytes(compiled) -> int | None:
    """XLA's own memory need for the step: arguments + outputs + temporaries, less aliasing."""
    try:
        stats = compiled.memory_analysis()
    except Exception:
        return None
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


# --- peaks --------------------------------------------------------------------------------------


def matmul_flops_per_s(matmul: Callable[[], object], n: int, repeats: int = 5) -> float:
    matmul()  # compile / warm up
    best = min(_timed(matmul) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def jax_matmul_peak(precision: str, n: int) -> float:
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), precision)
    dot = jax.jit(lambda x: x @ x)
    return matmul_flops_per_s(lambda: dot(a).block_until_ready(), n)


def torch_matmul_peak(precision: str, n: int) -> float:
    import torch

    a = torch.ones((n, n), dtype=getattr(torch, precision))
    return matmul_flops_per_s(lambda: a @ a, n)


def measure_cpu_peak(n: int = 2048, with_torch: bool = True) -> dict[str, float]:
    """Best large-matmul FLOP/s per precision, the higher of jax's and (float32 only) torch's: the
    most a real workload could reach on this CPU. torch's CPU bfloat16 matmul is left out: at
    0.3 GFLOP/s here it would take minutes and never be the higher one."""
    peaks = {precision: jax_matmul_peak(precision, n) for precision in ("float32", "bfloat16")}
    if with_torch:
        peaks["float32"] = max(peaks["float32"], torch_matmul_peak("float32", n))
    return peaks


def peak_flops(device, precision: str, tf32: bool, cpu_peak: dict) -> tuple[float | None, str]:
    """(dense peak FLOP/s, what it is) for this device and precision; None where unknown."""
    if device.platform == "cpu":
        return cpu_peak.get(precision), f"cpu {precision}"
    kind = device.device_kind
    for pattern, peaks in PEAKS:
        if pattern in kind:
            name = "tf32" if precision == "float32" and tf32 and "tf32" in peaks else precision
            name = name if name in peaks else "bfloat16"
            return peaks[name], f"{pattern} {name}"
    return None, f"{kind}: no peak in the table"


# --- one cell, each framework ---------------------------------------------------------------------


def tlx_prepare(cell: Cell, cfg: BenchConfig, peak: float | None, stack: contextlib.ExitStack):
    """(timer, finish): the cell's compiled tlx step ready to time, and finish() -> its result."""
    import jax

    bundle = tlx_bundle(cell.model, cell.precision, cfg)
    step, carry = svt.tlx_train_setup(bundle, cell.plan)
    rng = jax.random.key(1)
    make = lambda seed: numpy_batch(cell.model, cell.batch, cfg, seed, torch_layout=False)
    batches = stack.enter_context(PrefetchedBatches(make, depth=cfg.prefetch_depth))
    start = time.perf_counter()
    first_batch = next(batches)
    lowered = step.lower(*carry, first_batch, rng)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start

    def run_step(batch):
        out = compiled(*carry, batch, rng)
        jax.block_until_ready(out)
        carry[:] = svt.next_carry(carry, out)

    timer = StepTimer(run_step, batches, cfg.slow_step_s)

    def finish() -> dict:
        result = timer.result()
        on_cpu = jax.devices()[0].platform == "cpu"
        cpu_count = None if on_cpu else cpu_lowering_flops(step, (*carry, first_batch, rng))
        flops, source = step_flops(compiled, lowered, cpu_count)
        result.update(compile_s=compile_s, flops=flops, flops_source=source)
        result["mfu"] = flops / result["step_median_s"] / peak if flops and peak else None
        result["peak_bytes"] = peak_memory_bytes()
        result["xla_step_bytes"] = xla_step_bytes(compiled)
        return add_throughput(result, cell.batch, cfg.seq_len if is_text(cell.model) else None)

    return timer, finish


def tlx_result(cell: Cell, cfg: BenchConfig, peak: float | None) -> dict:
    with contextlib.ExitStack() as stack:
        timer, finish = tlx_prepare(cell, cfg, peak, stack)
        timer.run(cfg.warmup, cfg.steps)
        return finish()


def torch_device_for(jax_platform: str) -> str:
    """torch runs where jax runs: CUDA beside a jax GPU, the CPU beside a jax CPU."""
    import torch

    if jax_platform == "gpu" and torch.cuda.is_available():
        return "cuda"
    if jax_platform == "cpu":
        return "cpu"
    raise RuntimeError(f"no torch device matches jax's {jax_platform!r}")


def configure_torch(device: str, tf32: bool) -> None:
    import torch

    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    else:
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick kernels once, as XLA does
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def torch_model(cell: Cell):
    """(model, Adam, batch -> logits) in PyTorch for the cell's model, frozen as its plan says."""
    if is_text(cell.model):
        net, opt = torch_bert(cell.model, cell.plan)

        def logits_of(batch):
            ids, mask, types = (batch[k] for k in ("input_ids", "attention_mask", "token_type_ids"))
            return net(input_ids=ids, attention_mask=mask, token_type_ids=types).logits

    else:
        net, opt = svt.torchvision_model(cell.model, cell.plan)

        def logits_of(batch):
            return net(batch["image"])

    return net, opt, logits_of


def torch_prepare(cell: Cell, cfg: BenchConfig, device: str, stack: contextlib.ExitStack):
    """(timer, finish): the cell in PyTorch ready to time, and finish(flops, peak) -> its result,
    MFU counting XLA's FLOPs for the same step (`flops`)."""
    import torch

    net, opt, logits_of = torch_model(cell)
    net.to(device)
    channels_last = cfg.torch_channels_last and not is_text(cell.model)
    if channels_last:  # NHWC, as XLA's CPU convolutions and oneDNN's fast paths want
        net.to(memory_format=torch.channels_last)
    autocast = torch.autocast(device, torch.bfloat16, enabled=cell.precision == "bfloat16")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def run_step(batch):
        batch = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
        if channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        with autocast:
            logits = logits_of(batch)
        torch.nn.functional.cross_entropy(logits.float(), batch["label"]).backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    make = lambda seed: numpy_batch(cell.model, cell.batch, cfg, seed, torch_layout=True)
    batches = stack.enter_context(PrefetchedBatches(make, depth=cfg.prefetch_depth))
    timer = StepTimer(run_step, batches, cfg.slow_step_s)

    def finish(flops, peak) -> dict:
        result = timer.result()
        result["channels_last"] = channels_last
        result["mfu"] = flops / result["step_median_s"] / peak if flops and peak else None
        if device == "cuda":
            result["peak_bytes"] = int(torch.cuda.max_memory_allocated())
        else:
            result["peak_bytes"] = process_max_rss_bytes()
        return add_throughput(result, cell.batch, cfg.seq_len if is_text(cell.model) else None)

    return timer, finish


def torch_result(cell: Cell, cfg: BenchConfig, device: str, flops, peak) -> dict:
    with contextlib.ExitStack() as stack:
        timer, finish = torch_prepare(cell, cfg, device, stack)
        timer.run(cfg.warmup, cfg.steps)
        return finish(flops, peak)


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc) else ''}"


def free_memory(torch_used: bool) -> None:
    """Drop what a failed or finished cell left, so that the next one starts with free memory."""
    gc.collect()
    if torch_used:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_cell(cell: Cell, cfg: BenchConfig, env: dict) -> dict:
    """One row: tlx, then (with --torch) torch, or both in interleaved rounds (cfg.rounds > 1);
    an exception in either is recorded, not raised."""
    row = {**dataclasses.asdict(cell), "kind": "text" if is_text(cell.model) else "image"}
    row["input"] = f"seq {cfg.seq_len}" if is_text(cell.model) else f"{cfg.image_size}px"
    peak, peak_name = peak_flops(env["device"], cell.precision, cfg.tf32, env["cpu_peak"])
    row.update(peak_flops=peak, peak_name=peak_name, status="ok", rounds=1)
    row["load_avg_1m"] = os.getloadavg()[0]  # other processes on the machine skew the times
    start = time.perf_counter()
    row["tlx"] = row["torch"] = None
    if cfg.torch and cfg.rounds > 1:
        run_interleaved(cell, cfg, env, peak, row)
    else:
        run_in_turn(cell, cfg, env, peak, row)
    if row.get("tlx") and row.get("torch"):
        row["tlx_vs_torch"] = row["torch"]["step_median_s"] / row["tlx"]["step_median_s"]
    row["cell_s"] = time.perf_counter() - start
    return row


def _record_tlx_error(row: dict, exc: BaseException) -> None:
    row.update(status="error", error=error_text(exc), tlx=None)
    row["traceback"] = "".join(traceback.format_exception(exc, limit=8))


def _record_torch_error(row: dict, exc: BaseException) -> None:
    row["torch"] = None
    row["torch_error"] = error_text(exc)
    if row["status"] == "ok":
        row["status"] = "torch_error"


def run_in_turn(cell: Cell, cfg: BenchConfig, env: dict, peak, row: dict) -> None:
    """tlx's steps, its memory freed, then torch's (the GPU default: one model in memory)."""
    try:
        row["tlx"] = tlx_result(cell, cfg, peak)
    except Exception as exc:
        _record_tlx_error(row, exc)
    free_memory(False)
    if cfg.torch:
        flops = (row.get("tlx") or {}).get("flops")
        try:
            device = start_torch(env, cfg.tf32)
            row["torch"] = torch_result(cell, cfg, device, flops, peak)
        except Exception as exc:
            _record_torch_error(row, exc)
        free_memory(True)


def run_interleaved(cell: Cell, cfg: BenchConfig, env: dict, peak, row: dict) -> None:
    """Both frameworks set up at once and timed in alternating rounds (time_interleaved); one
    that fails is recorded and the other goes on. Both models are in memory together, so a CPU
    process's peak memory covers both."""
    row["rounds"] = cfg.rounds
    with contextlib.ExitStack() as stack:
        tlx = torch_ = None
        try:
            tlx = tlx_prepare(cell, cfg, peak, stack)
        except Exception as exc:
            _record_tlx_error(row, exc)
        try:
            device = start_torch(env, cfg.tf32)
            torch_ = torch_prepare(cell, cfg, device, stack)
        except Exception as exc:
            _record_torch_error(row, exc)
        timers = [t for t, _ in (x for x in (tlx, torch_) if x)]
        time_interleaved(timers, cfg.steps, cfg.warmup, cfg.rounds)
        if tlx:
            if tlx[0].error:
                _record_tlx_error(row, tlx[0].error)
            else:
                row["tlx"] = tlx[1]()
        if torch_:
            if torch_[0].error:
                _record_torch_error(row, torch_[0].error)
            else:
                row["torch"] = torch_[1]((row.get("tlx") or {}).get("flops"), peak)
    free_memory(True)


# --- reports ------------------------------------------------------------------------------------


def machine() -> str:
    return f"{svt.machine()}, {platform.python_implementation()} {platform.python_version()}"


def start_torch(env: dict, tf32: bool) -> str:
    """Import and set up torch on first use, so that jax has loaded its CUDA libraries (cuDNN
    among them) first, and return its device; raises where torch has no device like jax's."""
    if "torch_device" not in env:
        import torch

        env["torch"] = torch.__version__
        env["torch_device"] = torch_device_for(env["platform"])
        configure_torch(env["torch_device"], tf32)
    return env["torch_device"]


def environment(cfg: BenchConfig, measure_peak: bool) -> dict:
    """Device, versions and peaks, once per run; sets the float32 matmul precision."""
    import jax

    if not cfg.tf32:
        jax.config.update("jax_default_matmul_precision", "highest")
    device = jax.devices()[0]
    env = {
        "device": device,
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "machine": machine(),
        "cpu_peak": dict(CPU_PEAK),
        "cpu_peak_source": "CPU_PEAK table (measured on the project's 2-core CPU)",
        "compilation_cache": os.environ.get("JAX_COMPILATION_CACHE_DIR"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    if measure_peak and device.platform == "cpu":
        env["cpu_peak"] = measure_cpu_peak(with_torch=cfg.torch)
        env["cpu_peak_source"] = "measured at start-up (--measure_cpu_peak)"
    return env


def _fmt(value, spec: str, scale: float = 1.0) -> str:
    return "—" if value is None else format(value * scale, spec)


def table_line(row: dict) -> str:
    t, pt = row.get("tlx") or {}, row.get("torch") or {}
    notes = [row.get("error"), row.get("torch_error") and f"torch: {row['torch_error']}"]
    for name, result in (("tlx", t), ("torch", pt)):
        if result.get("steps") == 1 and result.get("first_step_s"):
            notes.append(f"{name}: 1 timed step (first step {result['first_step_s']:.0f} s)")
    note = "; ".join(n for n in notes if n)
    if row["status"] == "skipped":
        note = "skipped: time budget spent"
    steps = "—"
    if t:
        steps = (
            f"{t['step_median_s'] * 1e3:.1f} "
            f"[{t['step_p10_s'] * 1e3:.1f}–{t['step_p90_s'] * 1e3:.1f}]"
        )
    cells = [
        row["model"],
        row["plan"],
        str(row["batch"]),
        row["precision"],
        _fmt(t.get("compile_s"), ".1f"),
        steps,
        _fmt(t.get("examples_per_s"), ".1f"),
        _fmt(t.get("tokens_per_s"), ".0f"),
        _fmt(t.get("mfu"), ".1%"),
        _fmt(t.get("peak_bytes"), ".2f", 1e-9),
        _fmt(t.get("xla_step_bytes"), ".2f", 1e-9),
        _fmt(t.get("input_wait_fraction"), ".1%"),
        _fmt(pt.get("examples_per_s"), ".1f"),
        _fmt(pt.get("peak_bytes"), ".2f", 1e-9),
        _fmt(row.get("tlx_vs_torch"), ".2f") + ("x" if row.get("tlx_vs_torch") else ""),
        note.replace("|", "/"),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(report: dict) -> str:
    cfg, env = report["config"], report["environment"]
    lines = [
        f"# tlx benchmark, profile {cfg['profile']}",
        "",
        f"Device: {env['device_kind']} ({env['platform']}, {env['device_count']} device(s)); "
        f"{env['machine']}; jax {env['jax']}"
        + (f", torch {env['torch']} on {env['torch_device']}" if "torch" in env else "")
        + f"; {report['started']}"
        + (f"; XLA_FLAGS={env['xla_flags']}" if env.get("xla_flags") else "")
        + ".",
        f"Train steps: median [p10–p90] of {cfg['steps']} after {cfg['warmup']} warm-up"
        + (
            f", tlx and torch interleaved in {cfg['rounds']} rounds (A B B A ...)"
            if cfg.get("rounds", 1) > 1 and cfg.get("torch")
            else ""
        )
        + "; "
        f"inputs {cfg['image_size']}px / seq {cfg['seq_len']}"
        + (tf32_note(cfg["tf32"]) if env["platform"] == "gpu" else "")
        + f". MFU: XLA's FLOPs over the peak ({peak_note(report)}). Peak mem: the process's "
        "high-water mark so far (GPU allocator, or CPU max RSS); XLA mem: the step's own need. "
        "Input wait: share of step time blocked in next(). tlx/torch: throughput ratio.",
        "",
        "| model | plan | batch | precision | compile s | step ms [p10–p90] | examples/s "
        "| tokens/s | MFU | peak mem GB | XLA mem GB | input wait | torch examples/s "
        "| torch peak GB | tlx/torch | note |",
        "|" + "---|" * 16,
    ]
    lines += [table_line(row) for row in report["rows"]]
    lines += ["", f"Status: {report['status']}; {report['elapsed_s']:.0f} s."]
    if recount := report.get("flops_recount"):
        lines += [
            "",
            f"FLOPs and MFU recounted on {recount['date']} (commit {recount['commit']}) by "
            "`python -m experiments.bench_recount` on the CPU lowering of each step; every time "
            "is as measured.",
        ]
    return "\n".join(lines) + "\n"


def tf32_note(tf32: bool) -> str:
    return "; float32 matmuls " + ("in TF32 (both frameworks)" if tf32 else "in full float32")


def peak_note(report: dict) -> str:
    names = sorted({f"{r['peak_name']} {_fmt(r['peak_flops'], '.3g')}" for r in report["rows"]})
    return ", ".join(names) + " FLOP/s" if names else "none"


def plot(report: dict, path: Path) -> None:
    """Horizontal bars of examples/s per cell, tlx beside torch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    rows = [r for r in report["rows"] if r.get("tlx") or r.get("torch")]
    labels = [f"{r['model']} {r['plan']} b{r['batch']} {r['precision']}" for r in rows]
    ours = [(r.get("tlx") or {}).get("examples_per_s") or 0 for r in rows]
    theirs = [(r.get("torch") or {}).get("examples_per_s") or 0 for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.4 * max(len(rows), 1)))
    bars = [ax.barh(y - 0.2, ours, 0.4, label="tlx (JAX)")]
    if any(theirs):
        bars.append(ax.barh(y + 0.2, theirs, 0.4, label="PyTorch"))
    for group in bars:  # the log axis has few labels: print each value
        ax.bar_label(group, fmt="%.3g", padding=2, fontsize=7)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    if any(ours + theirs):
        ax.set_xscale("log")  # models differ by orders of magnitude
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(right=max(ours + theirs) * 3)  # room for the value labels
    ax.set_xlabel("examples / s (log)")
    env = report["environment"]
    ax.set_title(f"Train-step throughput on {env['device_kind']} ({report['config']['profile']})")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_reports(report: dict, out: Path) -> None:
    try:
        plot(report, out / "bench.png")
        report.pop("plot_error", None)
    except Exception as exc:  # a missing matplotlib must not lose the table
        report["plot_error"] = error_text(exc)
    write_atomic(out / "bench.json", json.dumps(report, indent=1, default=str))
    write_atomic(out / "bench.md", markdown(report))


# --- driver -------------------------------------------------------------------------------------


def over_budget(cfg: BenchConfig, elapsed: float, rows: Sequence[dict]) -> bool:
    """Past the budget, or the slowest cell so far would end past it."""
    if cfg.time_budget_s is None:
        return False
    slowest = max((r.get("cell_s", 0.0) for r in rows), default=0.0)
    return elapsed + slowest > cfg.time_budget_s


def public(env: dict) -> dict:
    return {k: v for k, v in env.items() if k != "device"}


def run_bench(cfg: BenchConfig, out: Path, measure_peak: bool = False) -> dict:
    """Every cell of `cfg`, most important first; reports rewritten in `out` after each."""
    validate(cfg)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    env = environment(cfg, measure_peak)
    report = {
        "config": dataclasses.asdict(cfg),
        "environment": public(env),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "status": "running",
        "rows": [],
    }
    print(f"devices: {env['device']} x{env['device_count']} ({env['device_kind']})", flush=True)
    for cell in cell_order(cfg):
        elapsed = time.perf_counter() - started
        if over_budget(cfg, elapsed, report["rows"]):
            row = {**dataclasses.asdict(cell), "status": "skipped", "tlx": None, "torch": None}
            row.update(peak_flops=None, peak_name="")
        else:
            row = run_cell(cell, cfg, env)
        report["rows"].append(row)
        report["elapsed_s"] = time.perf_counter() - started
        report["environment"] = public(env)
        print(table_line(row), flush=True)
        write_reports(report, out)
    report["status"] = "done"
    report["elapsed_s"] = time.perf_counter() - started
    write_reports(report, out)
    return report


def main(argv):
    del argv
    cfg = config_from_flags()
    out = Path(_OUT.value if _OUT.present else f"runs/bench_{cfg.profile}")
    report = run_bench(cfg, out, _MEASURE_CPU_PEAK.value)
    print(markdown(report))
    print(f"wrote {out}/bench.json, bench.md, bench.png")


if __name__ == "__main__":
    cli.run(main, program="experiments.bench")
