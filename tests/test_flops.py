"""tlx.flops: a compiled step's memory need, and the counter that measures it once per stage and
batch shape (issue 25's "lower peak memory" column)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlx.flops import FlopCounter, compiled_step_bytes, step_memory_bytes
from tlx.transfer import audit


def sgd_step(params, batch):
    loss = lambda p: jnp.mean((batch @ p["w"]) ** 2)  # noqa: E731
    grads = jax.grad(loss)(params)
    return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)


def test_step_memory_is_xlas_own_account_and_reads_a_stepped_donated_call():
    step = jax.jit(sgd_step, donate_argnums=0)
    params = {"w": jnp.ones((256, 128), jnp.float32)}
    batch = jnp.ones((64, 256), jnp.float32)
    expected = compiled_step_bytes(step.lower(params, batch).compile())
    new_params = step(params, batch)  # donates (deletes) params' buffer
    assert params["w"].is_deleted()
    measured = step_memory_bytes(step, (params, batch))
    assert measured == expected
    # At least the arguments (w 128 KiB, batch 64 KiB), and under them plus a copy of w and the
    # batch's activations four times over (the donated w's buffer is aliased by the new w).
    arguments = 256 * 128 * 4 + 64 * 256 * 4
    assert arguments <= measured < arguments + 2 * 256 * 128 * 4 + 64 * 128 * 4 * 4
    # A batch four times larger needs more: the measure follows the step's shapes.
    larger = jnp.ones((256, 256), jnp.float32)
    step(new_params, larger)
    assert step_memory_bytes(step, (new_params, larger)) > measured


def test_step_memory_is_none_for_what_is_not_a_jitted_step():
    assert step_memory_bytes(lambda x: x, (np.ones(3),)) is None
    assert compiled_step_bytes(object()) is None


def test_the_counter_measures_once_per_stage_and_shape_and_reports_a_raise():
    counter = FlopCounter()
    calls = []

    def measure(value):
        return lambda: calls.append(value) or value

    small, large = {"x": np.ones((2, 3), np.float32)}, {"x": np.ones((4, 3), np.float32)}
    assert counter.add(0, small, lambda: 10.0, measure(100)) == 100
    assert counter.add(0, small, lambda: 10.0, measure(999)) is None  # same shape: not again
    assert counter.add(0, large, lambda: 20.0, measure(50)) is None  # measured, not a raise
    assert counter.add(1, small, lambda: 10.0, measure(70)) == 70  # a new stage
    assert counter.add(1, large, lambda: 20.0) is None  # no measurement asked for
    assert calls == [100, 50, 70]
    assert counter.step_memory == {0: 100, 1: 70}
    assert counter.total == pytest.approx(70.0)


def test_step_memory_joins_the_audit_and_the_trained_extent(tmp_path):
    rows = [
        audit.GroupAudit("backbone", 1000, False, None, 0),
        audit.GroupAudit("head", 10, True, 1.0, 80),
    ]
    audit.save_audit(tmp_path, rows, 0, 0)
    audit.save_audit(tmp_path, rows, 1, 5)
    assert "step_memory_bytes" not in audit.trained_extent(tmp_path)  # not measured yet
    audit.record_step_memory(tmp_path, 0, 3000)
    audit.record_step_memory(tmp_path, 1, 5000)
    audit.record_step_memory(tmp_path, 7, 9000)  # no such stage's audit: nothing written
    saved = json.loads((tmp_path / "audit" / "stage_1.json").read_text())
    assert saved["step_memory_bytes"] == 5000 and saved["groups"][1]["params"] == 10
    assert audit.trained_extent(tmp_path) == {
        "trainable_params": 10,
        "optimizer_state_bytes": 80,
        "params": 1010,
        "step_memory_bytes": 5000,
    }
    assert not list((tmp_path / "audit").glob("*.partial"))
