"""Accelerator benchmark: tlx train steps over models x plans x batch sizes x precisions.

    python -m experiments.bench                                  # --profile=cpu_small, ~3 min
    python -m experiments.bench --profile=gpu --torch --out=runs/bench_gpu     # one H100/H200
    python -m experiments.bench --models=mobilenet_v2 --plans=finetune --batch_sizes=8 \
        --precisions=float32,bfloat16 --steps=5 --warmup=2 --image_size=32 --notorch

A profile names the cells and the step counts; each flag given on the command line overrides its
field (--models, --plans, --batch_sizes, --precisions, --steps, --warmup, --image_size, --seq_len,
--torch, --time_budget_s, --rounds). --models, --plans, --steps, --warmup and --out are the flags that
experiments.speed_vs_torch defines (its defaults are ignored here: the profile decides).

Each cell (model, plan, batch, precision) is tlx's per-stage jitted train step, the very program
the trainer runs (tlx.stage_program.StageProgram: gradient only w.r.t. the plan's trainable groups,
Adam, BatchNorm statistics frozen; see speed_vs_torch.tlx_stage), fed as the trainer feeds it
(tlx.data.iterate.iterate_batches: a thread reads ahead and puts each batch on the device), and
reports:
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

from experiments.bench.command_line import (
    config_from_flags,
    main,
)
from experiments.bench.config import (
    PRECISIONS,
    PROFILES,
    BenchConfig,
    Cell,
    cell_order,
    validate,
    with_overrides,
)
from experiments.bench.flops import (
    H100_SXM,
    PEAKS,
    cpu_clock_hz,
    cpu_flags,
    cpu_lowering_flops,
    first_cost,
    flops_per_cycle,
    jax_matmul_peak,
    matmul_flops_per_s,
    measure_cpu_peak,
    peak_flops,
    step_flops,
    theoretical_cpu_peak,
    torch_matmul_peak,
    xla_step_bytes,
)
from experiments.bench.frameworks import (
    LoweredStep,
    compile_ahead,
    configure_torch,
    lower_cell,
    mfu,
    start_torch,
    tlx_prepare,
    tlx_result,
    torch_device_for,
    torch_prepare,
    torch_result,
)
from experiments.bench.inputs import (
    numpy_batch,
    random_batches,
    read_ahead,
)
from experiments.bench.model_flops import bert_forward_flops, cnn_forward_flops, model_flops
from experiments.bench.models import (
    BERT_SIZES,
    BERT_TORCH_PREFIXES,
    BERT_VARIANTS,
    VOCAB_SIZE,
    bert_bundle,
    bert_shape,
    bert_sizes,
    fresh_torch,
    initial_variables,
    is_text,
    known_models,
    tlx_bundle,
    torch_bert,
    torch_bert_group,
    torch_model,
)
from experiments.bench.plan import CellEstimate, RunPlan, estimate_cells, plan_run, plan_table
from experiments.bench.report import (
    error_text,
    markdown,
    peak_note,
    plot,
    table_line,
    tf32_note,
    write_atomic,
    write_reports,
)
from experiments.bench.run import (
    environment,
    free_memory,
    gpu_versions,
    machine,
    over_budget,
    planned,
    public,
    run_bench,
    run_cell,
    run_in_turn,
    run_interleaved,
)
from experiments.bench.timing import (
    StepTimer,
    add_throughput,
    time_interleaved,
    time_steps,
)
from experiments.bench.trace import busy_intervals, merged_length, trace_steps

# The package's names, re-exported from its modules, as `experiments.bench.NAME`
# (tests and bench_recount use them).
__all__ = [
    "VOCAB_SIZE",
    "BERT_SIZES",
    "BERT_VARIANTS",
    "bert_shape",
    "BERT_TORCH_PREFIXES",
    "is_text",
    "known_models",
    "model_flops",
    "bert_forward_flops",
    "cnn_forward_flops",
    "initial_variables",
    "fresh_torch",
    "bert_sizes",
    "bert_bundle",
    "tlx_bundle",
    "torch_bert_group",
    "torch_bert",
    "torch_model",
    "PRECISIONS",
    "BenchConfig",
    "PROFILES",
    "with_overrides",
    "validate",
    "Cell",
    "cell_order",
    "numpy_batch",
    "random_batches",
    "read_ahead",
    "trace_steps",
    "busy_intervals",
    "merged_length",
    "StepTimer",
    "time_steps",
    "time_interleaved",
    "add_throughput",
    "H100_SXM",
    "PEAKS",
    "cpu_flags",
    "cpu_clock_hz",
    "flops_per_cycle",
    "theoretical_cpu_peak",
    "first_cost",
    "cpu_lowering_flops",
    "step_flops",
    "xla_step_bytes",
    "matmul_flops_per_s",
    "jax_matmul_peak",
    "torch_matmul_peak",
    "measure_cpu_peak",
    "peak_flops",
    "LoweredStep",
    "lower_cell",
    "compile_ahead",
    "mfu",
    "tlx_prepare",
    "tlx_result",
    "torch_device_for",
    "configure_torch",
    "torch_prepare",
    "torch_result",
    "start_torch",
    "CellEstimate",
    "RunPlan",
    "estimate_cells",
    "plan_run",
    "plan_table",
    "error_text",
    "table_line",
    "markdown",
    "tf32_note",
    "peak_note",
    "plot",
    "write_reports",
    "write_atomic",
    "free_memory",
    "run_cell",
    "run_in_turn",
    "run_interleaved",
    "gpu_versions",
    "planned",
    "machine",
    "environment",
    "over_budget",
    "public",
    "run_bench",
    "config_from_flags",
    "main",
]
