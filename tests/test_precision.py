"""tlx.precision: which multiplies XLA widens to float32, read from the optimized HLO."""

import jax
import jax.numpy as jnp

from tlx.precision import precision_notice, widened_on_backend, widened_ops

WIDENED_DOT = """
%wrapped_convert = f32[512,768]{1,0} fusion(%a.1), kind=kLoop, calls=%wrapped_convert_computation
  ROOT %dot_general.0 = f32[512,3072]{1,0} dot(%param_0, %param_1), lhs_contracting_dims={1}
"""
NATIVE_DOT = "  ROOT %dot.1 = bf16[512,3072]{1,0} dot(%a, %b), lhs_contracting_dims={1}\n"
GPU_GEMM = '%cublas-gemm.1 = (bf16[32,64]{1,0}, s8[0]{0}) custom-call(%p0, %p1), custom_call_target="__cublas$gemm"'
WIDENED_CONV = "%convolution.2 = f32[1,8,8,16]{3,2,1,0} convolution(%c, %d), window={size=3x3}"


def test_widened_multiplies_are_read_from_the_hlo():
    assert widened_ops(WIDENED_DOT) == ["dot"]
    assert widened_ops(WIDENED_DOT + WIDENED_CONV) == ["dot", "convolution"]
    assert widened_ops(NATIVE_DOT) == [] and widened_ops(GPU_GEMM) == []


def test_the_pattern_matches_what_xla_compiles_here():
    """A float32 program's dot is found in this jaxlib's real HLO text, so a widened bfloat16 one
    would be: the probe can answer "widened"."""
    matrix = jax.ShapeDtypeStruct((64, 64), jnp.float32)
    assert widened_ops(jax.jit(jnp.matmul).lower(matrix, matrix).compile().as_text()) == ["dot"]


def test_notice_only_where_the_backend_widens(monkeypatch):
    assert precision_notice("float32") is None
    widened = widened_on_backend("bfloat16")
    notice = precision_notice("bfloat16")
    assert (notice is None) == (not widened)
    import tlx.precision as precision

    monkeypatch.setattr(precision, "widened_on_backend", lambda name: ("dot", "convolution"))
    notice = precision_notice("bfloat16")
    assert "no bfloat16 dot or convolution kernel" in notice
    assert "model.compute_dtype='float32'" in notice and jax.__version__ in notice
    monkeypatch.setattr(precision, "widened_on_backend", lambda name: ())
    assert precision_notice("bfloat16") is None


def test_the_dot_probe_prints_both_frameworks_and_the_verdict():
    """experiments/bf16_dot.py, the measurement behind the notice (tiny: 16 rows, one round)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "experiments.bf16_dot", "--rows=16", "--rounds=1"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"XLA", "PyTorch"} <= set(rows)
    float32, bfloat16 = (float(x) for x in rows["XLA"].split("|")[2:4])
    assert float32 > 0 and bfloat16 > 0
    widened = widened_on_backend("bfloat16")
    assert ("XLA widens bfloat16 dot" in out) == ("dot" in widened)
