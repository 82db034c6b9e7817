"""The benchmark's reports: the Markdown table, the bar plot, bench.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from experiments.jsonio import write_atomic


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc) else ''}"


def _fmt(value, spec: str, scale: float = 1.0) -> str:
    return "—" if value is None else format(value * scale, spec)


def table_line(row: dict) -> str:
    t, pt = row.get("tlx") or {}, row.get("torch") or {}
    notes = [row.get("error"), row.get("torch_error") and f"torch: {row['torch_error']}"]
    for name, result in (("tlx", t), ("torch", pt)):
        if result.get("steps") == 1 and result.get("first_step_s"):
            notes.append(f"{name}: 1 timed step (first step {result['first_step_s']:.0f} s)")
    if t.get("compiled_in_parallel"):
        notes.append("compiled beside other cells")
    busy = (t.get("profile") or {}).get("device_busy_fraction")
    if busy is not None:
        notes.append(
            f"device busy {busy:.0%} of traced steps" + (" (host-bound)" if busy < 0.5 else "")
        )
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
        _fmt(t.get("model_mfu"), ".1%"),
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
        + (f", jaxlib {env['jaxlib']}" if env.get("jaxlib") else "")
        + (f", CUDA {env['cuda']}" if env.get("cuda") else "")
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
        + f". MFU: XLA's FLOPs over the peak ({peak_note(report)}); model MFU: the "
        "architecture's FLOPs (experiments/bench/model_flops.py: 6 N per token plus attention "
        "for BERT finetune, 3x the forward for a CNN) over the same peak. Peak mem: the process's "
        "high-water mark so far (GPU allocator, or CPU max RSS); XLA mem: the step's own need. "
        "Input wait: share of step time blocked in next(). tlx/torch: throughput ratio.",
        "",
        "| model | plan | batch | precision | compile s | step ms [p10–p90] | examples/s "
        "| tokens/s | MFU | model MFU | peak mem GB | XLA mem GB | input wait "
        "| torch examples/s | torch peak GB | tlx/torch | note |",
        "|" + "---|" * 17,
    ]
    lines += [table_line(row) for row in report["rows"]]
    for precision, ops in env.get("widened", {}).items():
        lines += [
            "",
            f"{precision} on this backend: XLA has no {precision} {' or '.join(ops)} kernel "
            "(tlx.precision reads the optimized HLO) and computes each in float32 between "
            f"converts, so tlx's {precision} rows time float32 arithmetic plus the converts.",
        ]
    lines += ["", f"Status: {report['status']}; {report['elapsed_s']:.0f} s."]
    if plan := report.get("plan"):
        lines += [
            "",
            f"Planned: {plan['steps']} timed steps a cell, estimated {plan['estimate_s']:.0f} s "
            f"against a budget of {plan['budget_s']:.0f} s"
            + ("" if plan["fits"] else " (the estimate did not fit)")
            + (
                f"; every tlx step compiled first in {report['compile_phase_s']:.0f} s"
                if "compile_phase_s" in report
                else ""
            )
            + ".",
        ]
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


def write_reports(report: dict, out: Path) -> None:
    try:
        plot(report, out / "bench.png")
        report.pop("plot_error", None)
    except Exception as exc:  # a missing matplotlib must not lose the table
        report["plot_error"] = error_text(exc)
    write_atomic(out / "bench.json", json.dumps(report, indent=1, default=str))
    write_atomic(out / "bench.md", markdown(report))
