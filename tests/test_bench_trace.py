"""--profile_dir: traced steps and the device's busy share of them (experiments.bench.trace)."""

import dataclasses
from types import SimpleNamespace as NS

import pytest

from experiments import bench
from experiments.bench import trace


def event(name, start, duration):
    return NS(name=name, start_ns=start, duration_ns=duration)


def test_overlapping_work_counts_once():
    assert trace.merged_length([(0, 10), (5, 15), (20, 30), (30, 31)]) == 26
    assert trace.merged_length([]) == 0


def test_gpu_busy_time_is_its_streams_work_not_the_module_spans():
    streams = NS(name="Stream #13(Compute)", events=[event("gemm", 0, 40), event("add", 60, 20)])
    copies = NS(name="Stream #14(MemcpyH2D)", events=[event("copy", 30, 20)])
    modules = NS(name="XLA Modules", events=[event("jit_step", 0, 100)])  # spans the gaps
    device = NS(name="/device:GPU:0", lines=[streams, copies, modules])
    host = NS(name="/host:CPU", lines=[NS(name="python", events=[event("step", 0, 100)])])
    intervals = trace.busy_intervals(NS(planes=[host, device]))
    assert trace.merged_length(intervals) == 70  # 0-50 and 60-80


def test_cpu_busy_time_leaves_out_waits_and_markers():
    client = NS(
        name="tf_XLAPjRtCpuClient/1",
        events=[event("fusion", 0, 30), event("SlinkyThreadPool::Await", 30, 50)],
    )
    pool = NS(name="tf_XLAEigen/2", events=[event("dot", 10, 30), event("end: dot", 40, 0)])
    python = NS(name="python", events=[event("PjitFunction(step)", 0, 100)])
    host = NS(name="/host:CPU", lines=[python, client, pool])
    assert trace.merged_length(trace.busy_intervals(NS(planes=[host]))) == 40


def test_a_profiled_cell_writes_a_trace_and_reports_the_busy_share(tmp_path):
    from tests.test_bench import TINY

    cfg = dataclasses.replace(TINY, profile_dir=str(tmp_path / "traces"), profile_steps=2)
    report = bench.run_bench(cfg, tmp_path / "out")
    (row,) = report["rows"]
    profile = row["tlx"]["profile"]
    assert profile["trace"].endswith(".xplane.pb")
    assert (tmp_path / "traces" / "mobilenet_v2_feature_extraction_b2_float32").is_dir()
    assert profile["traced_steps"] == 2 and profile["traced_wall_s"] > 0
    assert 0 < profile["device_busy_fraction"] <= 1.05
    assert profile["device_busy_s"] == pytest.approx(
        profile["device_busy_fraction"] * profile["traced_wall_s"]
    )
    assert "device busy" in (tmp_path / "out" / "bench.md").read_text()
