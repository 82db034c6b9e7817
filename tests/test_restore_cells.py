"""Published sweeps survive a fresh checkout: aggregate --out keeps each finished cell's records,
restore_cells puts them (or, for older results, rows of the published CSV) back into a workdir."""

import json
import shutil

import pytest

from experiments import aggregate as agg
from experiments import restore_cells as rc
from experiments import sweep as sw
from tests.test_sweep import fabricate

FINISHED = [
    f"plan.name={plan},seed={seed}"
    for plan, seed in [("finetune", 0), ("finetune", 1), ("finetune", 2)]
    + [("progressive", 0), ("progressive", 1)]
]
MISSING = "plan.name=progressive,seed=2"


def published(tmp_path):
    """A fabricated sweep (5 of 6 cells finished), aggregated and published to results/abl."""
    fabricate(tmp_path / "sweep")
    result = agg.aggregate(tmp_path / "sweep", group_by=None, over="seed")
    agg.publish(result, tmp_path / "results" / "abl", "python -m x", "a machine")
    return result, tmp_path / "results" / "abl"


def test_published_records_redo_the_table_and_resume_a_sweep(tmp_path):
    result, prefix = published(tmp_path)
    records = rc.records_dir(prefix)
    assert records == tmp_path / "results" / "abl_cells"
    assert sorted(p.name for p in records.iterdir() if p.is_dir()) == sorted(FINISHED)
    for name in FINISHED:
        for file in rc.RECORD_FILES:
            assert (records / name / file).read_bytes() == (
                tmp_path / "sweep" / name / file
            ).read_bytes()
    assert not (records / MISSING).exists()  # only finished cells are kept

    # The repository alone redoes the same rows (the missing cell is still listed as missing).
    again = agg.aggregate(records, group_by=None, over="seed")
    assert again["rows"] == result["rows"]
    assert agg.publish(again, prefix, "python -m x", "a machine")  # onto itself: no copy error

    # A fresh workdir gets them back, and the sweep then counts them as finished.
    done = rc.restore(prefix, tmp_path / "fresh")
    assert sorted(done["records"]) == sorted(FINISHED) and done["csv"] == []
    cell = sw.Cell(FINISHED[0], {}, 10, tmp_path / "fresh" / FINISHED[0])
    assert cell.state() == "finished"
    assert sw.Cell(MISSING, {}, 10, tmp_path / "fresh" / MISSING).state() == "new"


def test_cells_published_before_records_are_rebuilt_from_the_csv(tmp_path):
    result, prefix = published(tmp_path)
    shutil.rmtree(rc.records_dir(prefix))  # as results published before records were kept
    fresh = tmp_path / "fresh"
    kept = fresh / FINISHED[0] / "summary.json"
    kept.parent.mkdir(parents=True)
    kept.write_text(json.dumps({"steps": 10, "results": {"test": {"accuracy": 0.5}}}))

    done = rc.restore(prefix, fresh)
    assert done["kept"] == [FINISHED[0]] and sorted(done["csv"]) == sorted(FINISHED[1:])
    assert json.loads(kept.read_text())["results"]["test"]["accuracy"] == 0.5  # untouched
    assert not (fresh / MISSING).exists()

    shutil.copyfile(tmp_path / "sweep" / "sweep.json", fresh / "sweep.json")  # as the sweep would
    again = agg.aggregate(fresh, group_by=None, over="seed")
    before = {r["cell"]: r for r in result["rows"]}
    columns = ["status", "steps", "test_accuracy", "test_loss", "validation_accuracy"]
    columns += ["train_seconds", "examples_per_sec", "peak_memory_bytes"]
    for row in again["rows"]:
        if row["cell"] in FINISHED[1:]:
            for column in columns:
                assert str(row[column]) == str(before[row["cell"]][column]), column
    assert "Restored from an earlier published CSV" in again["markdown"]
    assert f"- {FINISHED[1]}: {prefix}.csv" in again["markdown"]  # (no git repository here)
    assert f"- {FINISHED[0]}:" not in again["markdown"]  # a real record, not a restored one
    # The machine comes from the published header; the kept cell recorded none.
    assert {r["machine"] for r in again["rows"] if r["cell"] in done["csv"]} == {"a machine"}
    assert "The cells ran on more than one machine" in again["markdown"]
    assert "- 4 cells: a machine" in again["markdown"]
    assert "- 1 cell: not recorded" in again["markdown"]
    split = agg.aggregate(fresh, group_by=["plan.name", "machine"], over="seed")
    assert "more than one machine" not in split["markdown"]  # already split by machine
    _, cells = agg.load_cells(fresh)
    curves, _ = agg.group_curves(cells, again["rows"], ["plan.name"])
    assert "plan.name=progressive" not in curves  # restored cells have no curve to draw


def test_restore_says_what_to_pass_when_nothing_was_published(tmp_path):
    with pytest.raises(SystemExit, match="neither .*nope.csv nor .*nope_cells"):
        rc.restore(tmp_path / "nope", tmp_path / "fresh")
