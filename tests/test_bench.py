"""experiments.bench on a tiny configuration: reports, statistics, errors kept per cell."""

import dataclasses
import importlib.util
import json

import numpy as np
import pytest

from experiments import bench

TINY = bench.BenchConfig(
    models=("mobilenet_v2",),
    plans=("feature_extraction",),
    batch_sizes={"mobilenet_v2": (2,)},
    precisions=("float32",),
    steps=3,
    warmup=2,
    image_size=32,
    seq_len=16,
    torch=False,
)
TIMING_KEYS = {
    "step_median_s",
    "step_p10_s",
    "step_p90_s",
    "examples_per_s",
    "input_wait_fraction",
    "peak_bytes",
}


def check_timing(result: dict) -> None:
    assert set(result) >= TIMING_KEYS
    assert 0 < result["step_p10_s"] <= result["step_median_s"] <= result["step_p90_s"]
    assert result["examples_per_s"] == pytest.approx(2 / result["step_median_s"])
    assert 0 <= result["input_wait_fraction"] < 1
    assert result["peak_bytes"] > 0


def check_files(out) -> dict:
    report = json.loads((out / "bench.json").read_text())
    assert report["status"] == "done"
    table = (out / "bench.md").read_text()
    assert "| mobilenet_v2 | feature_extraction | 2 | float32 |" in table
    if importlib.util.find_spec("matplotlib"):
        assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "plot_error" in report
    return report


def test_tlx_only_cell_reports_times_flops_and_mfu(tmp_path):
    bench.run_bench(TINY, tmp_path)
    report = check_files(tmp_path)
    (row,) = report["rows"]
    assert row["status"] == "ok" and row["torch"] is None and "tlx_vs_torch" not in row
    tlx = row["tlx"]
    check_timing(tlx)
    assert tlx["compile_s"] > 0 and tlx["tokens_per_s"] is None
    assert tlx["flops"] > 1e6  # a MobileNetV2 step at 32px is some 10^8 FLOPs
    assert row["peak_flops"] == bench.theoretical_cpu_peak()["float32"]
    assert 0 < tlx["mfu"] <= 1 and 0 < tlx["model_mfu"] <= 1
    assert tlx["mfu"] == pytest.approx(tlx["flops"] / tlx["step_median_s"] / row["peak_flops"])
    # Feature extraction is one forward pass: the architecture's count (torchvision's MACs x 2)
    # and XLA's (which adds BatchNorm, ReLU6 and the head's backward) agree to within 30%.
    assert tlx["model_flops"] == pytest.approx(bench.cnn_forward_flops("mobilenet_v2", 32) * 2)
    assert 0.7 < tlx["model_flops"] / tlx["flops"] < 1.3


def test_the_benchmark_times_the_trainers_stage_program_fed_as_the_trainer_feeds_it():
    import jax

    from experiments import speed_vs_torch as svt
    from tlx.stage_program import StageProgram

    make = lambda seed: bench.numpy_batch("mobilenet_v2", 2, TINY, seed, torch_layout=False)
    batches = bench.random_batches(make)
    bundle = bench.tlx_bundle("mobilenet_v2", "float32", TINY)
    program, carry, mode = svt.tlx_stage(bundle, "feature_extraction", train_batches=batches)
    assert isinstance(program, StageProgram) and program.train_batches is batches
    assert set(carry[0]) == program.trainable_paths == {"classifier/bias", "classifier/kernel"}
    reader = bench.read_ahead(program.train_batches, 2, mode.put_batch)
    first, second, third = (next(reader) for _ in range(3))
    reader.close()
    assert isinstance(first["image"], jax.Array)  # put on the device while read, as in training
    assert np.array_equal(first["image"], third["image"]) and first["image"].shape == (2, 32, 32, 3)
    assert not np.array_equal(first["image"], second["image"])


def test_torch_ratio_and_a_failing_cell_that_does_not_stop_the_run(tmp_path):
    pytest.importorskip("torchvision")
    cfg = bench.with_overrides(TINY, torch=True, plans=("no_such_plan", "feature_extraction"))
    bench.run_bench(cfg, tmp_path)
    report = check_files(tmp_path)
    failed, ok = report["rows"]  # the failing plan is ordered first: the run went on after it
    assert failed["plan"] == "no_such_plan" and failed["status"] == "error"
    assert "no_such_plan" in failed["error"] and failed["tlx"] is None
    assert "ValueError" in failed["torch_error"]
    assert ok["status"] == "ok"
    check_timing(ok["tlx"])
    check_timing(ok["torch"])
    assert ok["tlx_vs_torch"] == pytest.approx(
        ok["torch"]["step_median_s"] / ok["tlx"]["step_median_s"]
    )
    assert "no_such_plan" in (tmp_path / "bench.md").read_text()


def test_gpu_profile_runs_the_important_cells_first():
    cells = bench.cell_order(bench.PROFILES["gpu"])
    assert len(cells) == 4 * 2 * 2 * 2 + 2  # issue 24: finetune and feature extraction, 2 batches
    first = [(c.model, c.plan, c.batch, c.precision) for c in cells[:5]]
    assert first == [
        ("resnet50", "finetune", 64, "bfloat16"),
        ("resnet50", "finetune", 64, "float32"),
        ("resnet50", "feature_extraction", 64, "bfloat16"),
        ("resnet50", "feature_extraction", 64, "float32"),
        ("bert_base", "finetune", 32, "bfloat16"),
    ]
    moderate = {"resnet50": 64, "bert_base": 32, "vgg16": 64, "mobilenet_v2": 64}
    assert all(c.batch == moderate[c.model] for c in cells[:16])
    # BERT's attention variants (the extra cells) right after the moderate batch sizes
    assert {c.model for c in cells[16:18]} == {"bert_base_fused", "bert_base_nodrop"}
    assert all(c.batch == 4 * moderate[c.model] for c in cells[18:])


def test_overrides_replace_profile_fields():
    cfg = bench.with_overrides(
        bench.PROFILES["gpu"], models=["vgg16", "bert_mini"], batch_sizes=["8"], steps=4
    )
    assert cfg.models == ("vgg16", "bert_mini") and cfg.steps == 4
    assert cfg.batch_sizes == {"vgg16": (8,), "bert_mini": (8,)}
    assert cfg.plans == bench.PROFILES["gpu"].plans
    assert cfg.extra_cells == ()  # the profile's extra cells were for its own models
    kept = bench.with_overrides(bench.PROFILES["gpu"], models=["bert_mini"])
    assert kept.batch_sizes == {"bert_mini": (64, 256)}  # no sizes of its own: the first model's


class FakeStage:
    def __init__(self, analysis):
        self.analysis = analysis

    def cost_analysis(self):
        return self.analysis


def test_flops_from_a_dict_a_list_or_the_lowered_program():
    assert bench.step_flops(FakeStage({"flops": 5.0}), FakeStage(None)) == (5.0, "compiled")
    assert bench.step_flops(FakeStage([{"flops": 7.0}]), FakeStage(None)) == (7.0, "compiled")
    missing = FakeStage([{"bytes accessed": 1.0}])
    assert bench.step_flops(missing, FakeStage({"flops": 3.0})) == (3.0, "lowered")
    assert bench.step_flops(missing, FakeStage([])) == (None, None)


class FakeDevice:
    def __init__(self, platform, kind):
        self.platform, self.device_kind = platform, kind


@pytest.mark.parametrize(
    "kind,precision,tf32,expected",
    [
        ("NVIDIA H100 80GB HBM3", "bfloat16", True, 989e12),
        ("NVIDIA H100 80GB HBM3", "float32", True, 494.7e12),
        ("NVIDIA H200", "float32", False, 67e12),
        ("NVIDIA A100-SXM4-80GB", "float32", False, 19.5e12),
        ("TPU v5 lite", "float32", True, 197e12),
        ("TPU v4", "bfloat16", True, 275e12),
        ("Some GPU", "bfloat16", True, None),
    ],
)
def test_peak_table(kind, precision, tf32, expected):
    assert bench.peak_flops(FakeDevice("gpu", kind), precision, tf32, {})[0] == expected


def test_cpu_peak_comes_from_the_given_table():
    peak, name = bench.peak_flops(FakeDevice("cpu", "cpu"), "bfloat16", True, {"bfloat16": 3.0})
    assert (peak, name) == (3.0, "cpu bfloat16")


@pytest.mark.parametrize(
    "flags,float32,bfloat16",
    [
        ({"avx2", "fma"}, 32, 32),  # AMD EPYC with AVX2: bfloat16 has no faster path
        ({"avx2", "avx512f", "avx512_bf16"}, 64, 128),  # AMD EPYC Zen 4/5 with AVX-512
        ({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, 64, 1024),  # Xeon AMX
        (set(), 16, 16),
    ],
)
def test_cpu_peak_is_cores_times_clock_times_the_instruction_sets_flops(flags, float32, bfloat16):
    peak = bench.theoretical_cpu_peak(flags, clock_hz=2.5e9, cores=2)
    assert peak == {"float32": 2 * 2.5e9 * float32, "bfloat16": 2 * 2.5e9 * bfloat16}


def test_this_machines_cpu_peak_bounds_a_measured_matmul():
    """MFU at most 100%: the theoretical peak must not fall below what a matmul reaches (a
    table measured on another machine kind did, and MFU read 145-215%). A clock running above
    the one the OS reports would break this; measure_cpu_peak then raises the peak."""
    peak = bench.theoretical_cpu_peak()
    assert bench.jax_matmul_peak("float32", 512) <= peak["float32"]


def test_a_first_step_slower_than_slow_step_s_leaves_one_timed_step():
    calls = []

    def run_step(batch):
        calls.append(batch)
        if len(calls) == 1:
            import time

            time.sleep(0.05)

    batches = iter(range(100))
    slow = bench.time_steps(run_step, batches, steps=5, warmup=3, slow_step_s=0.01)
    assert slow["steps"] == 1 and slow["warmup"] == 1 and len(calls) == 2
    assert slow["first_step_s"] >= 0.05
    calls.clear()
    fast = bench.time_steps(run_step, iter(range(100)), steps=5, warmup=3, slow_step_s=10.0)
    assert fast["steps"] == 5 and len(calls) == 8


def test_interleaved_rounds_alternate_a_b_b_a_and_drop_a_failing_framework():
    order = []

    def stepper(name, fail_at=None):
        def run_step(batch):
            order.append(name)
            if fail_at is not None and len(order) >= fail_at:
                raise RuntimeError(f"{name} broke")

        return run_step

    a = bench.StepTimer(stepper("a"), iter(range(100)))
    b = bench.StepTimer(stepper("b"), iter(range(100)))
    bench.time_interleaved([a, b], steps=5, warmup=1, rounds=3)
    # warm-up a, b; then rounds of 2, 2, 1 timed steps, each round after the first led by an
    # untimed one: a a b b | (b) b b (a) a a | (a) a (b) b
    assert order == ["a", "b", *"aabb", *"bbbaaa", *"aabb"]
    assert a.result()["steps"] == b.result()["steps"] == 5 and a.warmup == 1
    order.clear()
    good, bad = (
        bench.StepTimer(stepper("g"), iter(range(100))),
        bench.StepTimer(stepper("x", fail_at=4), iter(range(100))),
    )
    bench.time_interleaved([good, bad], steps=4, warmup=1, rounds=2)
    assert isinstance(bad.error, RuntimeError) and "x broke" in str(bad.error)
    assert good.error is None and good.result()["steps"] == 4  # went on alone


def test_rounds_must_fit_in_the_steps():
    with pytest.raises(ValueError, match="--rounds=6 must be between 1 and --steps=5"):
        bench.validate(bench.with_overrides(TINY, steps=5, rounds=6))


def test_interleaved_cell_reports_both_frameworks(tmp_path):
    pytest.importorskip("torchvision")
    cfg = bench.with_overrides(TINY, torch=True, steps=2, warmup=1, rounds=2)
    bench.run_bench(cfg, tmp_path)
    (row,) = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert row["status"] == "ok" and row["rounds"] == 2
    assert row["tlx"]["steps"] == 2 and row["torch"]["steps"] == 2
    assert row["tlx_vs_torch"] > 0
    assert "interleaved in 2 rounds" in (tmp_path / "bench.md").read_text()


def test_torch_cnn_runs_channels_last_and_the_note_names_a_one_step_figure(tmp_path):
    pytest.importorskip("torchvision")
    cfg = bench.with_overrides(TINY, torch=True, steps=2, warmup=1, slow_step_s=0.0)
    bench.run_bench(cfg, tmp_path)
    (row,) = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert row["torch"]["channels_last"] is True
    assert row["torch"]["steps"] == 1 and row["tlx"]["steps"] == 1
    assert "torch: 1 timed step" in (tmp_path / "bench.md").read_text()


def test_flops_on_the_cpu_lowering_count_what_an_accelerator_hides():
    import jax
    import jax.numpy as jnp

    from experiments.bench import cpu_lowering_flops, step_flops

    step = jax.jit(lambda a, b: jnp.tanh(a @ b))
    a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
    counted = cpu_lowering_flops(step, (a, b))
    assert counted >= 2 * 64 * 32 * 16  # the matmul, plus the tanh
    assert counted < 2 * 64 * 32 * 16 + 64 * 16 * 50
    lowered = step.lower(a, b)
    # An accelerator's compiled count that misses its library calls loses to the CPU count.
    flops, source = step_flops(lowered.compile(), lowered, cpu_count=1e12)
    assert (flops, source) == (1e12, "cpu_lowering")
    assert cpu_lowering_flops(lambda x: x, (a,)) is None  # not a jitted step: no count, no crash


def test_bert_attention_variants_differ_only_in_attention_in_both_frameworks():
    """bert_base_fused: tlx through jax.nn.dot_product_attention without attention dropout;
    bert_base_nodrop: the eager path without it; torch runs SDPA with the same dropout."""
    import jax.numpy as jnp

    configs = {m: bench.bert_bundle(m, jnp.bfloat16).module.config for m in bench.BERT_VARIANTS}
    base, fused, nodrop = (configs[m] for m in ("bert_base", "bert_base_fused", "bert_base_nodrop"))
    assert (base.attn_implementation, base.attention_probs_dropout_prob) == ("eager", 0.1)
    assert (fused.attn_implementation, fused.attention_probs_dropout_prob) == ("fused", 0.0)
    assert (nodrop.attn_implementation, nodrop.attention_probs_dropout_prob) == ("eager", 0.0)
    assert fused.hidden_size == base.hidden_size and fused.hidden_dropout_prob == 0.1
    assert bench.bert_sizes("bert_base_fused")["attention_probs_dropout_prob"] == 0.0
    assert bench.model_flops("bert_base_fused", "finetune", 1, 224, 128) == bench.model_flops(
        "bert_base", "finetune", 1, 224, 128
    )


def test_the_torch_bert_runs_sdpa_attention_with_the_variant_s_dropout():
    """The PyTorch side of every BERT cell: transformers' classifier with SDPA attention and the
    same sizes and attention dropout as tlx's (it once failed to build under transformers 5)."""
    model = bench.fresh_torch("bert_mini")
    assert model.config._attn_implementation == "sdpa"
    sizes = bench.bert_sizes("bert_mini")
    assert all(getattr(model.config, k) == v for k, v in sizes.items())
    assert model.classifier.out_features == 2


def test_a_bfloat16_run_says_where_xla_widens_its_multiplies(tmp_path):
    """On a backend without bfloat16 kernels (XLA:CPU), the report says the bfloat16 rows time
    float32 arithmetic; on one with them, it says nothing."""
    from tlx.precision import widened_on_backend

    bench.run_bench(dataclasses.replace(TINY, precisions=("bfloat16",)), tmp_path)
    table = (tmp_path / "bench.md").read_text()
    assert "| mobilenet_v2 | feature_extraction | 2 | bfloat16 |" in table
    widened = widened_on_backend("bfloat16")
    assert ("bfloat16 on this backend: XLA has no bfloat16" in table) == bool(widened)
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["environment"]["widened"] == ({"bfloat16": list(widened)} if widened else {})
