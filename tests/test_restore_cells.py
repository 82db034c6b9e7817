"""Published sweeps survive a fresh checkout: aggregate --out keeps the study's records file,
restore_cells puts its cells (or, for older results, rows of the published CSV) back into a
workdir."""

import json

import pytest

from experiments import aggregate as agg
from experiments import restore_cells as rc
from experiments import sweep as sw
from tests.test_sweep import fabricate
from tlx import run_folder

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
    records = agg.records_path(prefix)
    assert records == tmp_path / "results" / "abl_records.jsonl.gz"
    assert not (tmp_path / "results" / "abl_cells").exists()  # one file, no folder of files
    header, cells = agg.read_records(records)
    assert sorted(cells) == sorted(FINISHED)  # only finished cells are kept
    assert header["sweep"] == json.loads((tmp_path / "sweep" / "sweep.json").read_text())

    # The repository alone redoes the same rows (the missing cell is still listed as missing).
    again = agg.aggregate(tmp_path / "redo", group_by=None, over="seed", records=records)
    assert again["rows"] == result["rows"]
    assert again["markdown"] == result["markdown"]
    assert again["sweep_command"] == result["sweep_command"]  # the sweep's own workdir
    before = records.read_bytes()
    assert agg.publish(again, prefix, "python -m x", "a machine")  # onto its own source
    assert records.read_bytes() == before

    # A fresh workdir gets them back, as the files the sweep and aggregate read.
    fresh = tmp_path / "fresh"
    done = rc.restore(prefix, fresh)
    assert sorted(done["records"]) == sorted(FINISHED) and done["csv"] == done["kept"] == []
    for name in FINISHED:
        original, restored = tmp_path / "sweep" / name, fresh / name
        assert run_folder.read_summary(restored) == run_folder.read_summary(original)
        assert run_folder.read_metrics(restored) == run_folder.read_metrics(original)
        assert run_folder.read_config(restored) == run_folder.read_config(original)
    cell = sw.Cell(FINISHED[0], {}, 10, fresh / FINISHED[0])
    assert cell.state() == "finished"
    assert sw.Cell(MISSING, {}, 10, fresh / MISSING).state() == "new"
    # The records file itself may be named, and cells already there are kept.
    assert rc.restore(records, fresh)["kept"] == sorted(FINISHED)


def test_cells_published_before_records_are_rebuilt_from_the_csv(tmp_path):
    result, prefix = published(tmp_path)
    agg.records_path(prefix).unlink()  # as results published before records were kept
    fresh = tmp_path / "fresh"
    kept = fresh / FINISHED[0] / "summary.json"
    kept.parent.mkdir(parents=True)
    kept.write_text(json.dumps({"steps": 10, "results": {"test": {"accuracy": 0.5}}}))

    done = rc.restore(prefix, fresh)
    assert done["kept"] == [FINISHED[0]] and sorted(done["csv"]) == sorted(FINISHED[1:])
    assert json.loads(kept.read_text())["results"]["test"]["accuracy"] == 0.5  # untouched
    assert not (fresh / MISSING).exists()

    (fresh / "sweep.json").write_bytes((tmp_path / "sweep" / "sweep.json").read_bytes())
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


def test_a_cell_in_both_the_records_and_the_csv_is_restored_once(tmp_path):
    _, prefix = published(tmp_path)
    done = rc.restore(prefix, tmp_path / "fresh")
    assert sorted(done["records"]) == sorted(FINISHED) and done["csv"] == []
    again = rc.restore(prefix, tmp_path / "fresh")
    assert again["kept"] == sorted(FINISHED) and again["records"] == again["csv"] == []


def test_rows_taken_from_another_study_are_not_restored_into_this_sweep(tmp_path):
    """A study published with --rows_from lists the other study's rows in its CSV (e.g. the
    classical baselines beside the converged cells); a fresh workdir gets only its own cells."""
    fabricate(tmp_path / "sweep")
    fabricate(tmp_path / "baseline")
    agg.publish(
        agg.aggregate(tmp_path / "baseline", group_by=None, over="seed"),
        tmp_path / "results" / "base",
        "python -m y",
        "a machine",
    )
    result = agg.aggregate(
        tmp_path / "sweep",
        group_by=None,
        over="seed",
        rows_from=[agg.records_path(tmp_path / "results" / "base")],
    )
    assert len(result["rows"]) > len(FINISHED) + 1  # the baseline's rows are in the table
    agg.publish(result, tmp_path / "results" / "abl", "python -m x", "a machine")
    fresh = tmp_path / "fresh"
    done = rc.restore(tmp_path / "results" / "abl", fresh)
    assert sorted(done["records"]) == sorted(FINISHED) and done["csv"] == []
    assert sorted(p.name for p in fresh.iterdir()) == sorted(FINISHED)


def test_restore_says_what_to_pass_when_nothing_was_published(tmp_path):
    with pytest.raises(SystemExit, match="neither .*nope.csv nor .*nope_records.jsonl.gz"):
        rc.restore(tmp_path / "nope", tmp_path / "fresh")
    broken = tmp_path / "bad_records.jsonl.gz"
    broken.write_text("not gzip")
    with pytest.raises(SystemExit, match="bad_records.jsonl.gz cannot be read"):
        rc.restore(tmp_path / "bad", tmp_path / "fresh")
