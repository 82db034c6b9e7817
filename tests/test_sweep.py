"""experiments.sweep (grammar, naming, key checks, skip / resume, the process pool) and
experiments.aggregate (mean ± std over seeds, CSV / Markdown / plots); one real tiny sweep."""

import csv
import json
import re
import statistics
import sys

import pytest

from experiments import aggregate as agg
from experiments import sweep as sw
from tests.test_cli import run, tiny_overrides

CONFIG = "configs/minilm_rt_progressive.py"


# --- grammar ---------------------------------------------------------------------------------


def values(cells):
    return [{k: item.value for k, item in cell.items()} for cell in cells]


def test_grammar_is_a_cartesian_product_in_order():
    cells = values(
        sw.grid(sw.parse_sweep("plan.name=[feature_extraction,progressive];seed=[0,1,2]"))
    )
    assert len(cells) == 6
    assert cells[0] == {"plan.name": "feature_extraction", "seed": 0}
    assert cells[1] == {"plan.name": "feature_extraction", "seed": 1}
    assert cells[5] == {"plan.name": "progressive", "seed": 2}


def test_grammar_types_single_values_and_zipped_groups():
    text = "seed=3; optim.learning_rate=[1e-4, 0.5]; x=[true,False]; s=['1',\"a,b\"]; b=[(48,64),(32,)]"
    axes = sw.parse_sweep(text)
    assert [a.keys for a in axes] == [("seed",), ("optim.learning_rate",), ("x",), ("s",), ("b",)]
    got = [[row[0].value for row in a.rows] for a in axes]
    assert got == [[3], [1e-4, 0.5], [True, False], ["1", "a,b"], [(48, 64), (32,)]]
    assert type(got[0][0]) is int and type(got[1][1]) is float
    zipped = values(
        sw.grid(sw.parse_sweep("(plan.name,plan.k)=[(freeze_to,2),(finetune,0)];seed=[0,1]"))
    )
    assert zipped == [
        {"plan.name": "freeze_to", "plan.k": 2, "seed": 0},
        {"plan.name": "freeze_to", "plan.k": 2, "seed": 1},
        {"plan.name": "finetune", "plan.k": 0, "seed": 0},
        {"plan.name": "finetune", "plan.k": 0, "seed": 1},
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty sweep"),
        ("seed[0,1]", "is not key=[v1,v2,...] or key=value"),
        ("seed=[0,1", "missing ']'"),
        ("seed=[0,1]]", "unbalanced ']'"),
        ("seed=[]", "empty value list"),
        ("seed=[0,,1]", "empty value"),
        ("seed=[0];seed=[1]", "'seed' appears twice"),
        ("plan name=[a]", "bad key 'plan name'"),
        ("(plan.name,plan.k)=[(a,1,2)]", "take tuples of 2 values"),
        ("s=['abc]", "unclosed quote"),
    ],
)
def test_bad_sweep_strings_say_what_is_wrong(text, message):
    with pytest.raises(sw.SweepError, match=None) as e:
        sw.parse_sweep(text)
    assert message in str(e.value)


def test_cell_names_are_stable_and_filesystem_safe():
    assert sw.cell_name({"plan.name": "progressive", "seed": 1}) == "plan.name=progressive,seed=1"
    assert sw.cell_name({"optim.learning_rate": 1e-4, "data.buckets": (48, 64)}) == (
        "optim.learning_rate=0.0001,data.buckets=48+64"
    )
    slash, underscore = sw.cell_name({"init_from": "runs/a"}), sw.cell_name({"init_from": "runs_a"})
    assert "/" not in slash and slash != underscore and slash.startswith("init_from=runs_a-")
    assert sw.cell_name({"init_from": "runs/a"}) == slash  # stable
    long = sw.cell_name({"plan.lr_multipliers": "x" * 300})
    assert len(long) <= sw.NAME_LIMIT + 9
    assert sw.cell_name({}) == "default"


# --- keys against the config -----------------------------------------------------------------


def test_keys_and_types_are_checked_against_the_config(tmp_path):
    with pytest.raises(sw.SweepError) as e:
        sw.plan_sweep(CONFIG, "plan.nmae=[a,b]", tmp_path)
    assert "unknown config key 'plan.nmae'" in str(e.value)
    assert "Did you mean 'plan.name'" in str(e.value) and "'every'" in str(e.value)
    with pytest.raises(sw.SweepError, match="expects an int"):
        sw.plan_sweep(CONFIG, "seed=[0,x]", tmp_path)
    with pytest.raises(sw.SweepError, match="unknown config key 'total_step'"):
        sw.plan_sweep(CONFIG, "seed=[0]", tmp_path, ["total_step=3"])
    with pytest.raises(sw.SweepError, match="both swept and --set"):
        sw.plan_sweep(CONFIG, "seed=[0]", tmp_path, ["seed=3"])
    with pytest.raises(sw.SweepError, match="is a section"):
        sw.plan_sweep(CONFIG, "plan=[a]", tmp_path)
    sweep = sw.plan_sweep(
        CONFIG, "optim.learning_rate=[1,2e-5];plan.name=[finetune]", tmp_path, ["total_steps=7"]
    )
    assert [c.overrides for c in sweep.cells] == [
        {"optim.learning_rate": 1.0, "plan.name": "finetune"},
        {"optim.learning_rate": 2e-5, "plan.name": "finetune"},
    ]
    assert all(c.total_steps == 7 for c in sweep.cells)
    command = sweep.command(sweep.cells[0])
    assert command[1:4] == ["-m", "tlx.train", f"--config={CONFIG}"]
    assert "--config.total_steps=7" in command and "--config.optim.learning_rate=1.0" in command
    assert not tmp_path.joinpath("sweep.json").exists()  # planning writes nothing


def test_a_sweep_declared_in_the_config_is_used(tmp_path):
    config = tmp_path / "declared.py"
    config.write_text(
        "from configs.minilm_rt_base import base_config\n\n\n"
        "def get_config():\n"
        "    config = base_config()\n"
        "    config.sweep = 'plan.name=[finetune,progressive];seed=[0,1]'\n"
        "    return config\n"
    )
    sweep = sw.plan_sweep(str(config), None, tmp_path / "root")
    assert [c.name for c in sweep.cells][:2] == [
        "plan.name=finetune,seed=0",
        "plan.name=finetune,seed=1",
    ]
    assert len(sweep.cells) == 4
    with pytest.raises(sw.SweepError, match="declares no `sweep` field"):
        sw.plan_sweep(CONFIG, None, tmp_path)


def test_unknown_key_is_refused_before_any_run(tmp_path):
    root = tmp_path / "sweep"
    result = run(
        "-m",
        "experiments.sweep",
        f"--config={CONFIG}",
        f"--workdir={root}",
        "--sweep=plan.nmae=[feature_extraction,progressive];seed=[0,1]",
        timeout=60,
    )
    assert result.returncode != 0
    assert "unknown config key 'plan.nmae'" in result.stderr
    assert "Did you mean 'plan.name'" in result.stderr
    assert not root.exists()  # no sweep.json, no cell folder


# --- skip / resume and the process pool, with a fake trainer ---------------------------------

FAKE_TRAIN = """
import json, pathlib, sys
workdir, steps, seed = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print("fake training", workdir.name)
if seed == 2:
    print("boom: seed 2 is cursed")
    sys.exit(3)
acc = 0.5 + 0.1 * seed
(workdir / "metrics.jsonl").write_text(json.dumps({"step": steps, "split": "train", "loss": 1.0, "examples_per_sec": 10.0}) + "\\n")
summary = {"steps": steps, "train_seconds_this_run": 1.0, "selection": {"metric": None},
           "results": {"test": {"accuracy": acc, "loss": 1.0}}}  # as a run without selection writes
if seed == 3:  # a detector: selected on mAP, no accuracy
    summary["selection"] = {"metric": "mAP"}
    summary["results"] = {"test": {"mAP": 0.25, "loss": 1.0}}
(workdir / "summary.json").write_text(json.dumps(summary))
"""


def fake_command(cell):
    return [
        sys.executable,
        "-c",
        FAKE_TRAIN,
        str(cell.workdir),
        str(cell.total_steps),
        str(cell.overrides["seed"]),
    ]


def test_finished_cells_are_skipped_unfinished_rerun_failures_reported(tmp_path):
    root = tmp_path / "sweep"
    sweep = sw.plan_sweep(CONFIG, "seed=[0,1,2,3]", root, ["total_steps=4"])
    sw.write_sweep_json(sweep)
    done, partial, failing, new = sweep.cells
    done.workdir.mkdir(parents=True)
    (done.workdir / "summary.json").write_text(json.dumps({"steps": 4, "results": {}}))
    partial.workdir.mkdir()
    (partial.workdir / "summary.json").write_text(json.dumps({"steps": 2}))  # fewer steps
    assert [c.state() for c in sweep.cells] == ["finished", "partial", "new", "new"]

    import io

    out = io.StringIO()
    results = sw.execute(sweep, workers=2, command=fake_command, out=out)
    assert [r.status for r in results] == ["skipped", "finished", "failed", "finished"]
    assert results[2].returncode == 3 and "boom: seed 2 is cursed" in results[2].log_tail
    assert "FAILED (exit 3)" in out.getvalue() and "boom" in out.getvalue()
    assert "seed=0  skipped" in out.getvalue()  # the final table
    # Each finished cell names its own headline metric: accuracy, or mAP for a detector.
    assert re.search(r"seed=1: finished in \d+ s, test accuracy 0\.6000", out.getvalue())
    assert re.search(r"seed=3: finished in \d+ s, test mAP 0\.2500", out.getvalue())
    assert json.loads((done.workdir / "summary.json").read_text()) == {"steps": 4, "results": {}}
    assert json.loads((partial.workdir / "summary.json").read_text())["steps"] == 4
    assert "fake training seed=1" in (partial.workdir / "train.log").read_text()

    again = sw.execute(sweep, workers=1, command=fake_command, out=io.StringIO())
    assert [r.status for r in again] == ["skipped", "skipped", "failed", "skipped"]
    assert (failing.workdir / "train.log").read_text().count("experiments.sweep:") == 2  # appended


def test_a_stopped_sweep_leaves_the_cells_still_queued_untouched(tmp_path):
    sweep = sw.plan_sweep(CONFIG, "seed=[0,1,2,3]", tmp_path / "sweep", ["total_steps=4"])
    started = []

    def report(event, cell, result):
        if event == "start":
            started.append(cell)

    def poll():
        if started:
            raise KeyboardInterrupt  # what SIGTERM / Ctrl-C raise in the sweep's main thread

    def slow(cell):
        return [sys.executable, "-c", "import time; time.sleep(60)"]

    with pytest.raises(KeyboardInterrupt):
        sw.Runner(sweep, workers=1).run(sweep.cells, command=slow, report=report, poll=poll)
    first, *queued = sweep.cells
    assert started == [first] and (first.workdir / "train.log").exists()
    # A later run must not mistake them for started ones: no folder, no log header.
    assert [c.state() for c in queued] == ["new"] * 3
    assert not any(c.workdir.exists() for c in queued)


def test_sweep_json_grows_with_new_cells_and_refuses_other_settings(tmp_path):
    first = sw.plan_sweep(CONFIG, "seed=[0,1]", tmp_path, ["total_steps=4"])
    sw.write_sweep_json(first)
    more = sw.plan_sweep(CONFIG, "seed=[1,2]", tmp_path, ["total_steps=4"])
    described = json.loads(sw.write_sweep_json(more).read_text())
    assert [c["name"] for c in described["cells"]] == ["seed=0", "seed=1", "seed=2"]
    assert described["config"] == CONFIG and described["set"] == {"total_steps": 4}
    other = sw.plan_sweep(CONFIG, "seed=[0]", tmp_path, ["total_steps=8"])
    with pytest.raises(sw.SweepError, match="different set"):
        sw.write_sweep_json(other)


# --- aggregation -----------------------------------------------------------------------------

ACCURACY = {("finetune", 0): 0.80, ("finetune", 1): 0.82, ("finetune", 2): 0.84}
ACCURACY |= {("progressive", 0): 0.70, ("progressive", 1): 0.75}  # seed 2: missing


def fabricate(root):
    cells = []
    for plan in ("finetune", "progressive"):
        for seed in (0, 1, 2):
            name = f"plan.name={plan},seed={seed}"
            cells.append(
                {"name": name, "overrides": {"plan.name": plan, "seed": seed}, "total_steps": 10}
            )
            folder = root / name
            folder.mkdir(parents=True)
            (folder / "config.json").write_text(
                json.dumps({"seed": seed, "data": {"eval_split": "validation"}})
            )
            if (plan, seed) not in ACCURACY:
                continue
            acc = ACCURACY[plan, seed]
            records = [
                {"step": 5, "split": "train", "loss": 1.0, "examples_per_sec": 100.0 + seed},
                {
                    "step": 5,
                    "split": "validation",
                    "loss": 0.9,
                    "accuracy": acc - 0.1,
                    "elapsed_seconds": 7.0,
                },
                {"step": 10, "split": "train", "loss": 0.5, "examples_per_sec": 200.0 + seed},
                {
                    "step": 10,
                    "split": "validation",
                    "loss": 0.6,
                    "accuracy": acc - 0.05,
                    "elapsed_seconds": 11.0,
                },
                {"step": 10, "split": "final_validation", "loss": 0.6, "accuracy": acc - 0.05},
            ]
            (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            summary = {
                "plan": plan,
                "steps": 10,
                "train_seconds_this_run": 10.0 + seed,
                "results": {
                    "validation": {"accuracy": acc - 0.05, "loss": 0.6, "examples": 100},
                    "test": {"accuracy": acc, "loss": 0.5, "examples": 100},
                },
            }
            if plan == "finetune":
                summary["peak_memory_bytes"] = 1000 * (seed + 1)
                summary["trained"] = {"trainable_params": 500, "optimizer_state_bytes": 3 * 2**20}
                if seed > 0:  # seed 0: a run from before the trainer measured its step
                    summary["trained"]["step_memory_bytes"] = (10 + seed) * 2**20
            (folder / "summary.json").write_text(json.dumps(summary))
    keys = ["plan.name", "seed"]
    (root / "sweep.json").write_text(json.dumps({"config": CONFIG, "keys": keys, "cells": cells}))


def test_aggregate_mean_std_over_seeds_and_files(tmp_path):
    fabricate(tmp_path)
    result = agg.aggregate(tmp_path, group_by=None, over="seed")
    groups = {g["keys"]["plan.name"]: g for g in result["groups"]}
    assert groups["finetune"]["n"] == 3 and groups["progressive"]["n"] == 2
    mean, std, n = groups["finetune"]["test_accuracy"]
    assert mean == pytest.approx(0.82) and std == pytest.approx(
        statistics.stdev([0.80, 0.82, 0.84])
    )
    mean, std, n = groups["progressive"]["test_accuracy"]
    assert (mean, n) == (pytest.approx(0.725), 2) and std == pytest.approx(0.0353553, rel=1e-4)
    assert groups["finetune"]["examples_per_sec"][0] == pytest.approx(
        151.0
    )  # mean of train records

    md = (tmp_path / "aggregate.md").read_text()
    assert "| finetune | 3 | 0.8200 ± 0.0200 |" in md
    assert "| progressive | 2 | 0.7250 ± 0.0354 |" in md
    assert "plan.name=progressive,seed=2: missing" in md

    rows = list(csv.DictReader((tmp_path / "aggregate.csv").open()))
    assert len(rows) == 6
    by_cell = {r["cell"]: r for r in rows}
    assert by_cell["plan.name=progressive,seed=2"]["status"] == "missing"
    assert float(by_cell["plan.name=finetune,seed=1"]["test_accuracy"]) == pytest.approx(0.82)
    assert float(by_cell["plan.name=finetune,seed=1"]["examples_per_sec"]) == pytest.approx(151.0)
    assert by_cell["plan.name=finetune,seed=1"]["peak_memory_bytes"] == "2000"
    assert by_cell["plan.name=progressive,seed=1"]["peak_memory_bytes"] == ""
    assert by_cell["plan.name=finetune,seed=1"]["trainable_params"] == "500"
    assert by_cell["plan.name=progressive,seed=1"]["optimizer_state_bytes"] == ""
    assert "trained params | optimizer state (MiB) | step memory (MiB) |" in md  # cost columns
    assert "| 500 ± 0 | 3.00 ± 0.00 | 11.5 ± 0.7 |" in md  # step memory: the 2 cells with it
    assert by_cell["plan.name=finetune,seed=0"]["step_memory_bytes"] == ""
    assert by_cell["plan.name=finetune,seed=2"]["train_seconds"] == "12.0"
    for png in ("learning_curves.png", "bars.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"

    # one group over everything, a group_by key read from config.json
    pooled = agg.aggregate(tmp_path, group_by=[], over="seed")
    assert [g["n"] for g in pooled["groups"]] == [5]
    by_split = agg.aggregate(tmp_path, group_by=["data.eval_split"], over="seed")
    assert by_split["groups"][0]["keys"] == {"data.eval_split": "validation"}


def test_aggregate_times_each_cell_to_a_validation_accuracy(tmp_path):
    fabricate(tmp_path)
    result = agg.aggregate(tmp_path, group_by=None, over="seed", time_to_accuracy=[0.72, 0.9])
    by_cell = {r["cell"]: r for r in result["rows"]}
    # finetune's validation accuracy is 0.70 / 0.72 / 0.74 at step 5, +0.05 at step 10
    assert (by_cell["plan.name=finetune,seed=0"]["steps_to_0.72"]) == 10
    assert by_cell["plan.name=finetune,seed=0"]["seconds_to_0.72"] == 11.0
    assert by_cell["plan.name=finetune,seed=1"]["steps_to_0.72"] == 5
    assert by_cell["plan.name=finetune,seed=1"]["seconds_to_0.9"] == ""  # never reached
    groups = {g["keys"]["plan.name"]: g for g in result["groups"]}
    assert groups["finetune"]["seconds_to_0.72"][:3:2] == (pytest.approx(25 / 3), 3)
    assert "| seconds to 0.72 |" in (tmp_path / "aggregate.md").read_text()


def test_learning_curves_average_each_group_and_count_a_resumed_step_once(tmp_path):
    fabricate(tmp_path)
    metrics = tmp_path / "plan.name=finetune,seed=0" / "metrics.jsonl"
    # The run was resumed and evaluated step 10 again: only the later value may count.
    again = {"step": 10, "split": "validation", "accuracy": 0.9, "elapsed_seconds": 3.0}
    metrics.write_text(metrics.read_text() + json.dumps(again) + "\n")
    result = agg.aggregate(tmp_path, group_by=None, over="seed", time_to_accuracy=[0.72])
    _, cells = agg.load_cells(tmp_path)
    curves, splits = agg.group_curves(cells, result["rows"], ["plan.name"])
    assert splits == {"validation"}  # final_validation is not a curve point
    finetune = curves["plan.name=finetune"]
    assert sorted(finetune) == [5, 10] and len(finetune[10]) == 3
    assert statistics.fmean(finetune[5]) == pytest.approx(0.72)  # 0.70, 0.72, 0.74
    assert sorted(finetune[10]) == pytest.approx([0.77, 0.79, 0.9])
    assert len(curves["plan.name=progressive"][5]) == 2  # seed 2 never ran
    assert "| steps to 0.72 |" in result["markdown"]
    assert "| 7 ± 3 |" in result["markdown"]  # 10, 5 and 5 steps, shown as step counts


def test_aggregate_publishes_a_headed_table_and_plots_against_a_key(tmp_path):
    fabricate(tmp_path / "sweep")
    resumed = tmp_path / "sweep" / "plan.name=finetune,seed=1" / "summary.json"
    summary = json.loads(resumed.read_text())
    resumed.write_text(json.dumps({**summary, "resumed_from_step": 5}))
    result = agg.aggregate(tmp_path / "sweep", group_by=["plan.name"], over="seed", x_axis="seed")
    assert "Finished by a resumed run" in result["markdown"]
    assert "- plan.name=finetune,seed=1" in result["markdown"]
    assert result["files"]["against"].read_bytes()[:4] == b"\x89PNG"
    written = agg.publish(result, tmp_path / "results" / "abl", "python -m x --y", "a machine")
    names = sorted(p.name for p in written if p.parent == tmp_path / "results")
    assert names == [
        "abl.csv",
        "abl.md",
        "abl_against_seed.png",
        "abl_bars.png",
        "abl_curves.png",
        "abl_records.jsonl.gz",  # the study's records: one file (tests/test_records.py)
    ]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == names
    md = (tmp_path / "results" / "abl.md").read_text()
    assert md.startswith("# abl\n")
    assert "Made by `python -m x --y`" in md and "on a machine." in md
    assert f"`python -m experiments.sweep --config={CONFIG} --workdir={tmp_path / 'sweep'}`" in md
    assert "| finetune | 3 | 0.8200 ± 0.0200 |" in md
    with pytest.raises(ValueError, match="--x_axis='nope'.*'trainable_params'"):
        agg.aggregate(tmp_path / "sweep", x_axis="nope")
    # A parameter-efficient study's plot: accuracy against what each method trained.
    costs = agg.aggregate(tmp_path / "sweep", group_by=["plan.name"], x_axis="trainable_params")
    assert costs["files"]["against"].name == "against_trainable_params.png"
    assert costs["files"]["against"].read_bytes()[:4] == b"\x89PNG"


def test_all_labels_sit_at_the_real_training_size_on_the_x_axis():
    row = {"data.train_examples": 0, "train_examples": 54000}
    assert agg.x_value(row, "data.train_examples") == 54000.0
    assert agg.x_value({"data.train_examples": 300}, "data.train_examples") == 300.0
    assert agg.x_value({"seed": "a"}, "seed") is None


# --- end to end: a real 2-cell sweep of the tiny BERT, then aggregate --------------------------


def test_sweep_then_aggregate_tiny_bert(tiny_bert_dir, rt_data_dir, tmp_path):
    root = tmp_path / "sweep"
    fixed = [
        "--set=" + flag.removeprefix("--config.")
        for flag in tiny_overrides(tiny_bert_dir, rt_data_dir, workdir=None, steps=2)
        if flag.startswith("--config.")
    ]
    args = [
        "-m",
        "experiments.sweep",
        "--config=configs/minilm_rt_finetune.py",
        f"--workdir={root}",
        "--sweep=seed=[0,1]",
        "--workers=2",
        *fixed,
    ]
    result = run(*args, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for seed in (0, 1):
        summary = json.loads((root / f"seed={seed}" / "summary.json").read_text())
        assert summary["steps"] == 2
        assert summary["machine"].endswith("(Linux)") or "CPUs" in summary["machine"]
        assert "experiments.sweep:" in (root / f"seed={seed}" / "train.log").read_text()
    assert result.stdout.count("finished in") == 2

    again = run(*args, timeout=60)  # everything finished: nothing reruns
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished already, skipped") == 2

    table = run(
        "-m", "experiments.aggregate", f"--workdir={root}", "--group_by=plan.name", timeout=60
    )
    assert table.returncode == 0, table.stderr[-3000:]
    md = (root / "aggregate.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| finetune |"))
    assert line.startswith("| finetune | 2 | ") and " ± " in line
    assert "2 of 2 cells finished" in table.stdout
    for name in ("aggregate.csv", "learning_curves.png", "bars.png"):
        assert (root / name).exists()


def test_a_failed_cell_names_the_signal_and_a_sigkill_points_at_memory():
    from experiments.sweep.report import exit_reason

    assert exit_reason(3) == "exit 3"
    assert exit_reason(-15) == "exit -15, killed by SIGTERM"
    oom = exit_reason(-9)
    assert "SIGKILL" in oom and "out-of-memory" in oom and "--workers" in oom
