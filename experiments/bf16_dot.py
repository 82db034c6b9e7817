"""Why tlx's bfloat16 step is slower than its float32 one on a CPU (issue 24, item 6): one of
BERT-base's feed-forward matmuls ([batch*seq, 768] x [768, 3072]) timed in XLA and in PyTorch,
float32 and bfloat16, interleaved, beside what XLA compiled (tlx.precision reads the HLO).

    python -m experiments.bf16_dot --rows=1024 --rounds=5

XLA:CPU widens a bfloat16 dot to float32 (converts around a float32 dot), so its bfloat16 rate is
its float32 rate less the converts; PyTorch's oneDNN multiplies bfloat16 natively where the CPU has
AVX512-BF16 or AMX. Each figure is the best of `--rounds` rounds of 5 calls, in GFLOP/s.
"""

from __future__ import annotations

import contextlib
import time

from absl import app, flags

from tlx.machine import machine
from tlx.precision import widened_on_backend


def define_flags() -> None:
    """Defined only when run as a program, so that importing this module beside other
    experiments (tests do, in one process) claims no flag name."""
    flags.DEFINE_integer("rows", 1024, "Rows of the left operand (batch x sequence length).")
    flags.DEFINE_integer("rounds", 5, "Interleaved rounds; the best of each is kept.")


K, N = 768, 3072  # BERT-base's hidden and feed-forward sizes


def xla_matmul(dtype_name: str, rows: int):
    import jax
    import jax.numpy as jnp
    import numpy as np

    a = jnp.asarray(np.random.default_rng(0).standard_normal((rows, K)), dtype_name)
    b = jnp.asarray(np.random.default_rng(1).standard_normal((K, N)), dtype_name)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    return lambda: f(a, b).block_until_ready()


def torch_matmul(dtype_name: str, rows: int):
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(rows, K, dtype=dtype), torch.randn(K, N, dtype=dtype)
    a @ b
    return lambda: a @ b


def best_gflops(call, flops: float, calls: int = 5) -> float:
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def main(argv):
    del argv
    rows, flops = flags.FLAGS.rows, 2.0 * flags.FLAGS.rows * K * N
    calls = {}
    for dtype in ("float32", "bfloat16"):
        calls[("XLA", dtype)] = xla_matmul(dtype, rows)
        with contextlib.suppress(ImportError):  # torch is in the test extra only
            calls[("PyTorch", dtype)] = torch_matmul(dtype, rows)
    best = {key: 0.0 for key in calls}
    for _ in range(flags.FLAGS.rounds):  # interleaved: drift hits every arm alike
        for key, call in calls.items():
            best[key] = max(best[key], best_gflops(call, flops))
    print(
        f"[{rows}, {K}] x [{K}, {N}] on {machine()}; GFLOP/s, best of {flags.FLAGS.rounds} rounds"
    )
    print("| framework | float32 | bfloat16 | bfloat16 / float32 |")
    print("|---|---|---|---|")
    for framework in dict.fromkeys(f for f, _ in calls):
        f32, bf16 = best[(framework, "float32")], best[(framework, "bfloat16")]
        print(f"| {framework} | {f32:.1f} | {bf16:.1f} | {bf16 / f32:.2f} |")
    widened = widened_on_backend("bfloat16")
    print(
        "XLA widens bfloat16 " + " and ".join(widened) + " to float32 here."
        if widened
        else "XLA multiplies bfloat16 natively here."
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
