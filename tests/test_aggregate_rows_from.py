"""`experiments.aggregate --rows_from`: another study's cells (a sweep folder or a records file)
join the table as more rows, grouped and paired like the study's own, prefixed where their names
clash, and never written into this study's records."""

import json

import pytest

from experiments import aggregate as agg
from experiments.aggregate import significance as sig
from tests.test_sweep import fabricate

CLASSICAL = {0: 0.60, 1: 0.63, 2: 0.61}  # test accuracy of the joined study's cells, by seed


def classical_study(root, names=None):
    """A joined study without sweep.json: one finished cell per seed, its plan in config.json."""
    for seed, accuracy in CLASSICAL.items():
        folder = root / (names or {}).get(seed, f"seed={seed}")
        folder.mkdir(parents=True)
        config = {"seed": seed, "plan": {"name": "classical"}, "data": {"eval_split": "validation"}}
        (folder / "config.json").write_text(json.dumps(config))
        results = {"test": {"accuracy": accuracy, "loss": 1.0}, "validation": {"accuracy": 0.6}}
        summary = {"plan": "classical", "steps": 1, "results": results}
        (folder / "summary.json").write_text(json.dumps(summary))


def test_joined_cells_are_rows_grouped_and_paired_like_the_studys_own(tmp_path):
    fabricate(tmp_path / "neural")
    classical_study(tmp_path / "classical")
    alone = agg.aggregate(tmp_path / "neural", group_by=["plan.name"], over="seed")
    result = agg.aggregate(
        tmp_path / "neural", group_by=["plan.name"], over="seed",
        rows_from=[tmp_path / "classical"],
    )  # fmt: skip
    groups = {g["keys"]["plan.name"]: g for g in result["groups"]}
    assert set(groups) == {"finetune", "progressive", "classical"}
    assert groups["classical"]["test_accuracy"][0] == pytest.approx(1.84 / 3)
    assert groups["classical"]["n"] == 3
    assert len(result["rows"]) == len(alone["rows"]) + 3
    assert result["rows_from"] == [str(tmp_path / "classical")]
    # paired by seed against finetune (0.80, 0.82, 0.84): -0.20, -0.19, -0.23
    report = sig.significance(result, "plan.name=finetune")
    classical = next(c for c in report["comparisons"] if c["keys"]["plan.name"] == "classical")
    assert classical["n"] == 3 and classical["mean"] == pytest.approx((-0.20 - 0.19 - 0.23) / 3)
    # the joined cells stay in their own study: this study's records hold only its cells
    [records] = agg.publish_records(result, tmp_path / "out" / "study")
    _, cells = agg.read_records(records)
    assert set(cells) == {c.name for c in alone["cells"] if c.status == "finished"}


def test_a_records_file_joins_and_clashing_names_are_prefixed(tmp_path):
    fabricate(tmp_path / "neural")
    clash = {0: "plan.name=finetune,seed=0"}  # the same folder name as a neural cell
    classical_study(tmp_path / "classical", names=clash)
    published = agg.aggregate(tmp_path / "classical", group_by=None, over="seed")
    [records] = agg.publish_records(published, tmp_path / "results" / "classical")
    result = agg.aggregate(
        tmp_path / "neural", group_by=["plan.name"], over="seed", rows_from=[records]
    )
    names = [r["cell"] for r in result["rows"]]
    assert "classical/plan.name=finetune,seed=0" in names and "seed=1" in names
    assert names.count("plan.name=finetune,seed=0") == 1  # the study's own keeps its name
    joined = [c for c in result["cells"] if c.source]
    assert {c.source for c in joined} == {str(records)} and len(joined) == 3


def test_a_source_that_is_neither_a_folder_nor_a_records_file_is_an_error(tmp_path):
    fabricate(tmp_path / "neural")
    with pytest.raises(ValueError, match="expected a sweep's folder or a records file"):
        agg.aggregate(tmp_path / "neural", rows_from=[tmp_path / "nothing"])
    (tmp_path / "table.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="it is neither"):
        agg.aggregate(tmp_path / "neural", rows_from=[tmp_path / "table.csv"])
