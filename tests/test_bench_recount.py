"""experiments.bench_recount: FLOPs and MFU of a saved report recounted, times untouched."""

import json

import pytest

from experiments import bench, bench_recount
from tests.test_bench import TINY


def test_recount_restores_the_flops_an_accelerator_hid_and_keeps_every_time(tmp_path):
    bench.run_bench(TINY, tmp_path)
    path = tmp_path / "bench.json"
    report = json.loads(path.read_text())
    (row,) = report["rows"]
    measured = dict(row["tlx"])
    # What a GPU run before the fix wrote: a count missing the library calls, a torch column,
    # and a cell the budget skipped.
    row["tlx"].update(flops=1.0, flops_source="compiled", mfu=1e-9)
    row["torch"] = {"step_median_s": 2 * measured["step_median_s"], "mfu": 1e-9}
    report["rows"].append({**row, "plan": "finetune", "status": "skipped", "tlx": None})
    path.write_text(json.dumps(report))

    bench_recount.recount_file(path)

    again = json.loads(path.read_text())
    tlx, torch = again["rows"][0]["tlx"], again["rows"][0]["torch"]
    # The recount is the CPU lowering of the same step, which the CPU run counted too.
    assert tlx["flops"] == pytest.approx(measured["flops"], rel=0.1)
    assert tlx["flops_source"] == bench_recount.RECOUNT_SOURCE
    peak = row["peak_flops"]
    assert tlx["mfu"] == pytest.approx(tlx["flops"] / measured["step_median_s"] / peak)
    assert torch["mfu"] == pytest.approx(tlx["mfu"] / 2)
    for key in ("step_median_s", "step_p10_s", "step_p90_s", "examples_per_s", "compile_s"):
        assert tlx[key] == measured[key]
    assert again["rows"][1]["tlx"] is None and again["flops_recount"]["cells"] == 1
    table = (tmp_path / "bench.md").read_text()
    assert "recounted" in table and f"{tlx['mfu']:.1%}" in table


@pytest.mark.parametrize(
    "name, text, match",
    [("r.md", "# table", "expected a benchmark report .json"), ("r.json", "{}", "no 'rows'")],
)
def test_recount_refuses_what_is_not_a_report(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        bench_recount.recount_file(path, count=lambda key, cfg: pytest.fail("counted"))
