"""Dropout mask cost: flax's nn.Dropout, tlx's 16-bit Dropout and PyTorch's nn.Dropout.

    python -m experiments.dropout_speed            # BERT-base attention probabilities, batch 16

Times one dropout (forward only) on a (batch, heads, tokens, tokens) float32 array, best of 5
after a warm-up, with every framework on the machine's cores.
"""

from __future__ import annotations

import os
import time

from absl import flags

from tlx import cli


def define_flags() -> None:
    """Defined only when run as a program, so that importing this module beside other
    experiments (tests do, in one process) claims no flag name."""
    flags.DEFINE_list("shape", ["16", "12", "128", "128"], "Array shape.")
    flags.DEFINE_float("rate", 0.1, "Dropout rate.")


def best_of(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv):
    del argv
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import torch

    from tlx.machine import machine
    from tlx.models.dropout import Dropout

    shape, rate = tuple(int(s) for s in flags.FLAGS.shape), flags.FLAGS.rate
    x = jnp.ones(shape, jnp.float32)
    rows = {}
    for name, module in (("flax nn.Dropout", nn.Dropout(rate)), ("tlx Dropout", Dropout(rate))):
        apply = jax.jit(
            lambda key, x, module=module: module.apply(
                {}, x, deterministic=False, rngs={"dropout": key}
            )
        )
        rows[name] = best_of(lambda apply=apply: apply(jax.random.key(0), x).block_until_ready())
    torch.set_num_threads(os.cpu_count() or 1)
    layer, tx = torch.nn.Dropout(rate).train(), torch.ones(shape)
    rows["PyTorch nn.Dropout"] = best_of(lambda: layer(tx))
    print(f"dropout rate {rate} on {shape} float32, {machine()}")
    print("| implementation | ms |\n|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds * 1e3:.1f} |")


if __name__ == "__main__":
    define_flags()
    cli.run(main, program="experiments.dropout_speed")
