"""The device run's plan (experiments.bench.plan): every cell estimated, one timed-step count
that fits the budget, the dry run, and the model FLOPs the plan and model MFU rest on."""

import dataclasses

import pytest

from experiments import bench
from experiments.bench import command_line
from experiments.bench import plan as bench_plan


def test_the_gpu_profile_fits_eight_minutes_with_every_cell_and_at_least_five_steps():
    cfg = bench.PROFILES["gpu"]
    plan = bench.plan_run(cfg, "gpu", cfg.plan_budget_s, cfg.plan_min_steps)
    assert plan.fits and cfg.plan_budget_s <= 8 * 60
    assert cfg.plan_min_steps <= plan.steps <= cfg.steps
    assert len(plan.estimates) == len(bench.cell_order(cfg))  # nothing dropped
    longer = bench_plan.run_seconds(plan.estimates, plan.steps + 1, cfg.warmup, 12)
    assert plan.steps == cfg.steps or longer > cfg.plan_budget_s  # the most steps that fit


def test_a_tighter_budget_cuts_steps_not_cells_and_says_when_even_the_minimum_does_not_fit():
    cfg = bench.PROFILES["gpu"]
    roomy = bench.plan_run(cfg, "gpu", 10_000, 3)
    assert roomy.steps == cfg.steps and roomy.fits
    tight = bench.plan_run(cfg, "gpu", roomy.total_s - 30, 3)
    assert tight.steps < cfg.steps and tight.fits
    assert len(tight.estimates) == len(roomy.estimates) == 34
    impossible = bench.plan_run(cfg, "gpu", 60, 3)
    assert impossible.steps == 3 and not impossible.fits
    assert "DOES NOT FIT" in bench.plan_table(impossible)


def test_compiling_ahead_on_threads_shortens_the_estimate():
    cfg = bench.PROFILES["gpu"]
    serial = dataclasses.replace(cfg, compile_workers=0)
    estimates = bench.estimate_cells(cfg, "gpu")
    ahead = bench_plan.run_seconds(estimates, 5, 3, cfg.compile_workers)
    inline = bench_plan.run_seconds(estimates, 5, 3, serial.compile_workers)
    assert ahead < inline - 200  # 34 compiles of 2-42 s no longer in a row


def test_estimates_follow_the_measured_runs_and_scale_with_the_batch():
    cfg = bench.PROFILES["gpu"]
    by_cell = {
        (e.cell.model, e.cell.plan, e.cell.batch, e.cell.precision): e
        for e in bench.estimate_cells(cfg, "gpu")
    }
    measured = by_cell[("resnet50", "finetune", 64, "bfloat16")]
    assert measured.step_s == pytest.approx(0.0326) and measured.source == "H200 measured"
    big = by_cell[("resnet50", "finetune", 256, "bfloat16")]
    assert big.step_s == pytest.approx(4 * 0.0326)
    # cuDNN autotunes a (model, batch, precision) once: feature extraction after finetune is cheap
    fe = by_cell[("resnet50", "feature_extraction", 64, "bfloat16")]
    assert fe.torch_first_s < measured.torch_first_s / 10
    assert "other precision" in by_cell[("bert_base", "finetune", 32, "bfloat16")].source


def test_dry_run_prints_every_cell_its_estimate_and_the_total():
    cfg = bench.PROFILES["gpu"]
    text = command_line.dry_run(cfg)
    assert text.count("| resnet50 |") == 8 and text.count("| bert_base |") == 8
    assert "Total:" in text and "fits" in text
    assert f"{len(bench.cell_order(cfg))} cells" in text


def test_bert_model_flops_match_xlas_count_of_the_same_step():
    """6 N per token plus attention (PaLM's model FLOPs) against XLA's count of the finetune
    step's CPU lowering: XLA adds softmax, LayerNorm, GELU and Adam's elementwise work, a few
    percent at this size, and nothing may be missing."""
    import jax

    from experiments import speed_vs_torch as svt

    cfg = dataclasses.replace(bench.PROFILES["cpu_small"], seq_len=32)
    program, carry, _ = svt.tlx_stage(bench.tlx_bundle("bert_mini", "float32", cfg), "finetune")
    batch = bench.numpy_batch("bert_mini", 4, cfg, seed=0, torch_layout=False)
    xla = bench.cpu_lowering_flops(program.step, (*carry, batch, jax.random.key(1), 0))
    model = bench.model_flops("bert_mini", "finetune", 4, cfg.image_size, 32)
    assert 0.85 < model / xla <= 1.0


def test_model_flops_by_plan():
    forward = bench.bert_forward_flops("bert_base", 128)
    layers, d, _, d_ff = bench.BERT_SIZES["bert_base"]
    assert forward > 2 * layers * (4 * d * d + 2 * d * d_ff) * 128  # plus attention and head
    assert bench.model_flops("bert_base", "finetune", 2, 224, 128) == pytest.approx(6 * forward)
    assert bench.model_flops("bert_base", "feature_extraction", 2, 224, 128) == 2 * forward
    # freeze_half trains the top 6 of 12 layers: forward, then backward through half of them
    assert bench.model_flops("bert_base", "freeze_half", 1, 224, 128) == pytest.approx(2 * forward)
    resnet = bench.model_flops("resnet50", "finetune", 1, 224, 128)
    assert resnet == pytest.approx(3 * 2 * 4.089e9)
    assert bench.model_flops("resnet50", "freeze_half", 1, 224, 128) is None  # no formula


def test_compiled_ahead_on_threads_the_cells_run_and_say_so(tmp_path):
    from tests.test_bench import TINY

    sizes = {"mobilenet_v2": (2, 3)}
    cfg = dataclasses.replace(TINY, batch_sizes=sizes, compile_workers=2, plan_budget_s=600)
    report = bench.run_bench(cfg, tmp_path)
    assert report["compile_phase_s"] > 0 and report["plan"]["steps"] >= 1
    assert [r["batch"] for r in report["rows"]] == [2, 3]
    for row in report["rows"]:
        assert row["status"] == "ok" and row["tlx"]["compiled_in_parallel"]
        assert row["tlx"]["step_median_s"] > 0 and row["tlx"]["steps"] == cfg.steps
        assert row["tlx"]["compile_s"] > 0 and row["tlx"]["flops"] > 1e6
    assert "compiled beside other cells" in (tmp_path / "bench.md").read_text()
    assert "Planned:" in (tmp_path / "bench.md").read_text()
