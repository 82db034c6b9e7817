"""Whether the backend multiplies in the requested low precision, and the start-up notice where
it does not (issue 24, item 6).

XLA:CPU (jax 0.10) has no bfloat16 matmul or convolution kernel: its float normalization puts a
convert to float32 on each operand, multiplies in float32 and converts back, so a bfloat16 step is
slower than a float32 one (PyTorch's oneDNN multiplies bfloat16 natively with AVX512-BF16 / AMX).
Rather than trust a table of versions and CPUs, tlx asks XLA: it compiles a small dot and a small
convolution in the requested dtype and reads the optimized HLO for float32 ones.
"""

from __future__ import annotations

import functools
import re

LOW_PRECISION = ("bfloat16", "float16")
_WIDENED = {  # an HLO instruction computed in float32: `%x = f32[...]{layout} dot(` and the like
    op: re.compile(r"=\s*f32\[[^\]]*\](\{[^}]*\})?\s+" + op + r"\(")
    for op in ("dot", "convolution")
}


def widened_ops(optimized_hlo: str) -> list[str]:
    """The kinds of multiply ('dot', 'convolution') that an optimized HLO module computes in
    float32: where the program asked for a lower precision, XLA widened them."""
    return [op for op, pattern in _WIDENED.items() if pattern.search(optimized_hlo)]


@functools.cache
def widened_on_backend(dtype_name: str) -> tuple[str, ...]:
    """The multiplies the default backend widens to float32 when asked for `dtype_name`: a
    64x64 dot and a 3x3 convolution compiled and read (once per process, ~0.1 s)."""
    import jax
    import jax.numpy as jnp

    dtype = jnp.dtype(dtype_name)
    matrix = jax.ShapeDtypeStruct((64, 64), dtype)
    images, kernel = (
        jax.ShapeDtypeStruct((1, 8, 8, 16), dtype),
        jax.ShapeDtypeStruct((3, 3, 16, 16), dtype),
    )

    def conv(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    found = widened_ops(jax.jit(jnp.matmul).lower(matrix, matrix).compile().as_text())
    found += widened_ops(jax.jit(conv).lower(images, kernel).compile().as_text())
    return tuple(dict.fromkeys(found))


def precision_notice(compute_dtype: str) -> str | None:
    """A start-up line where `compute_dtype` has no fast kernels on this backend; None where it
    has (or for float32)."""
    if compute_dtype not in LOW_PRECISION:
        return None
    widened = widened_on_backend(compute_dtype)
    if not widened:
        return None
    import jax

    from tlx.machine import machine

    backend = jax.default_backend()
    return (
        f"Note: model.compute_dtype={compute_dtype!r} has no {compute_dtype} "
        f"{' or '.join(widened)} kernel on this {backend} backend ({machine()}, jax "
        f"{jax.__version__}): XLA computes each in float32 between converts, so a step is "
        f"slower than in float32 (activations still take half the memory). For speed here, "
        f"set model.compute_dtype='float32'."
    )
