"""experiments.aggregate.gap: the share of a FROM -> TO gap (source-only -> target oracle) each
group closes, per seed and from the means, with the seeds that cannot be paired listed; and
`python -m experiments.aggregate --gap_closed=FIELD=FROM:TO`."""

import csv
import json
import math

import pytest

from experiments.aggregate import gap
from tests.test_cli import run
from tests.test_significance import rows_of

SOURCE_ONLY = {0: 0.5, 1: 0.6, 2: 0.4}
ORACLE = {0: 1.0, 1: 0.9, 2: 0.8}


def test_hand_computed_shares_per_seed_and_of_the_means():
    rows = (
        rows_of(SOURCE_ONLY, strategy="none")
        + rows_of(ORACLE, strategy="oracle")
        + rows_of({0: 0.75, 1: 0.9, 2: 0.4}, strategy="coral")  # half, all, none of each gap
        + rows_of({0: 0.25, 1: 0.6, 2: 0.6}, strategy="adabn")  # -50%, 0%, +50%
    )
    entries = gap.gap_shares(
        rows, ["strategy"], "seed", "test_accuracy", ("strategy", "none", "oracle")
    )
    by = {e["keys"]["strategy"]: e for e in entries}
    assert set(by) == {"coral", "adabn"}  # the two ends are not compared with themselves
    coral = by["coral"]
    assert coral["seeds"] == ["0", "1", "2"] and coral["left_out"] == []
    assert coral["shares"] == pytest.approx([0.5, 1.0, 0.0])
    assert coral["mean"] == pytest.approx(0.5) and coral["std"] == pytest.approx(0.5)
    # the ratio of the means weighs each seed by its gap: (0.6833 - 0.5) / (0.9 - 0.5)
    assert coral["share_of_means"] == pytest.approx((2.05 / 3 - 0.5) / 0.4)
    assert (coral["value_mean"], coral["from_mean"], coral["to_mean"]) == pytest.approx(
        (2.05 / 3, 0.5, 0.9)
    )
    assert by["adabn"]["shares"] == pytest.approx([-0.5, 0.0, 0.5])
    table = gap.markdown(
        entries, ["strategy"], "seed", "test_accuracy", ("strategy", "none", "oracle")
    )
    assert (
        "| coral | 3 | 0.6833 | 0.5000 | 0.9000 | 50% | 50% | 0: 50%, 1: 100%, 2: 0% | 46% |"
        in table
    )
    assert (
        "| adabn | 3 | 0.4833 | 0.5000 | 0.9000 | 0% | 50% | 0: -50%, 1: 0%, 2: 50% | -4% |"
        in table
    )
    assert "none left out" in table


def test_each_target_against_its_own_ends_and_the_unpaired_listed():
    rows = (
        rows_of(SOURCE_ONLY, strategy="none", target="a")
        + rows_of({0: 0.9, 1: 0.9}, strategy="oracle", target="a")  # seed 2 not run
        + rows_of({0: 0.7, 1: 0.75, 2: 0.5}, strategy="coral", target="a")
        + rows_of({0: 0.3, 1: 0.3}, strategy="none", target="b")  # b has no oracle
        + rows_of({0: 0.4, 1: 0.5}, strategy="coral", target="b")
        + rows_of({0: 0.5, 1: 0.5}, strategy="none", target="c")
        + rows_of({0: 0.5, 1: 0.7}, strategy="oracle", target="c")  # seed 0: no gap
        + rows_of({0: 0.6, 1: 0.6}, strategy="coral", target="c")
    )
    spec = ("strategy", "none", "oracle")
    entries = gap.gap_shares(rows, ["target", "strategy"], "seed", "test_accuracy", spec)
    by = {e["keys"]["target"]: e for e in entries}
    assert by["a"]["seeds"] == ["0", "1"] and by["a"]["shares"] == pytest.approx([0.5, 0.5])
    assert by["a"]["left_out"] == ["seed=2: not in target=a, strategy=oracle"]
    assert by["b"]["seeds"] == [] and math.isnan(by["b"]["mean"])
    assert by["b"]["left_out"] == ["no finished group target=b, strategy=oracle"]
    assert by["c"]["seeds"] == ["1"] and by["c"]["shares"] == pytest.approx([0.5])
    assert math.isnan(by["c"]["std"])  # one seed: no spread
    assert by["c"]["left_out"] == ["seed=0: strategy=none and oracle are equal"]
    table = gap.markdown(entries, ["target", "strategy"], "seed", "test_accuracy", spec)
    assert "| b | coral | 0 | - | - | - | - | - | - | - |" in table
    assert "- target=b, strategy=coral: no finished group target=b, strategy=oracle" in table


def test_a_gap_that_is_not_there_is_an_error():
    rows = rows_of(SOURCE_ONLY, strategy="none") + rows_of(ORACLE, strategy="adabn")
    for spec in ("strategy=none", "strategy=none:", "none:oracle", "strategy=none:none"):
        with pytest.raises(ValueError, match="expected FIELD=FROM:TO"):
            gap.parse_gap(spec, ["strategy"])
    with pytest.raises(ValueError, match="'plan' is not a --group_by key"):
        gap.parse_gap("plan=none:oracle", ["strategy"])
    with pytest.raises(
        ValueError, match=r"no finished group has strategy=oracle; .*\['adabn', 'none'\]"
    ):
        gap.gap_shares(rows, ["strategy"], "seed", "test_accuracy", ("strategy", "none", "oracle"))


def _sweep(root, accuracy):
    """A finished sweep folder over (strategy, seed) with these test accuracies."""
    cells = []
    for (strategy, seed), acc in accuracy.items():
        name = f"strategy={strategy},seed={seed}"
        cells.append({"name": name, "overrides": {"strategy": strategy, "seed": seed}})
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"seed": seed, "strategy": strategy}))
        (folder / "metrics.jsonl").write_text("")
        results = {"test": {"accuracy": acc, "loss": 1.0 - acc, "examples": 100}}
        (folder / "summary.json").write_text(json.dumps({"steps": 10, "results": results}))
    sweep = {"config": "configs/x.py", "keys": ["strategy", "seed"], "cells": cells}
    (root / "sweep.json").write_text(json.dumps(sweep))


def test_the_command_line_writes_the_gap_files(tmp_path):
    accuracy = {("none", s): v for s, v in SOURCE_ONLY.items()}
    accuracy |= {("coral", s): v for s, v in {0: 0.75, 1: 0.9, 2: 0.4}.items()}
    _sweep(tmp_path / "study", accuracy)
    _sweep(tmp_path / "oracle", {("oracle", s): v for s, v in ORACLE.items()})
    common = [f"--workdir={tmp_path / 'study'}", f"--rows_from={tmp_path / 'oracle'}"]
    common += ["--group_by=strategy", "--over=seed", "--gap_closed=strategy=none:oracle"]
    done = run("-m", "experiments.aggregate", *common, f"--out={tmp_path / 'out' / 'study'}")
    assert done.returncode == 0, done.stderr
    row = "| coral | 3 | 0.6833 | 0.5000 | 0.9000 | 50% | 50% | 0: 50%, 1: 100%, 2: 0% | 46% |"
    assert row in done.stdout
    md = (tmp_path / "out" / "study_gap.md").read_text()
    assert md.startswith("# study_gap\n") and row in md
    assert f"Made by `python -m experiments.aggregate {' '.join(common)}`" in md
    with open(tmp_path / "out" / "study_gap.csv") as f:
        [written] = list(csv.DictReader(f))
    assert (written["strategy"], written["seeds"], written["from"]) == (
        "coral",
        "0 1 2",
        "strategy=none",
    )
    assert [float(x) for x in written["shares"].split()] == pytest.approx([0.5, 1.0, 0.0])
    assert float(written["share_of_means"]) == pytest.approx((2.05 / 3 - 0.5) / 0.4)

    bad = run("-m", "experiments.aggregate", *common[:-1], "--gap_closed=strategy=none:best")
    assert bad.returncode != 0
    assert "no finished group has strategy=best" in bad.stderr + bad.stdout
