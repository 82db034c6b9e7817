"""Issue 23's accuracy goals are judged from the published records, seed by seed: tlx's fine-tune
with torchvision's recipe against torchvision's (within 2 mAP points) and against its own random-init arm (30 AP50 points),
only once 3 seeds are paired; and the published comparison regenerates from its inputs."""

import json
import pathlib

import pytest

from experiments import frcnn_versus_torchvision as versus
from experiments.aggregate.records import encode

RESULTS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "results"


def cell(strategy, seed, m_ap, ap50):
    summary = {
        "results": {"test": {"mAP": m_ap, "AP50": ap50, "AP75": m_ap / 2}},
        "machine": "test CPU", "train_seconds_this_run": 100.0, "selected_step": 400,
    }  # fmt: skip
    return {"cell": f"seed={seed},strategy={strategy}", "summary": summary,
            "overrides": {"seed": seed, "strategy": strategy}}  # fmt: skip


def write_records(path, cells):
    path.write_bytes(encode({"records": 1, "sweep": None, "workdir": None},
                            {c["cell"]: c for c in cells}))  # fmt: skip
    return path


def reference(path, random_init, m_aps, ap50s):
    runs = [
        {"seed": s, "mAP": m, "AP50": a, "AP75": m / 2, "machine": "ref CPU", "train_seconds": 9.0}
        for s, (m, a) in enumerate(zip(m_aps, ap50s))
    ]
    path.write_text(json.dumps({"random_init": random_init, "steps": 400, "runs": runs}))
    return path


def judge(tmp_path, tlx_cells, ref=(None, None)):
    records = write_records(tmp_path / "s_records.jsonl.gz", tlx_cells)
    result = versus.compare(
        versus.tlx_runs(records),
        versus.reference_runs(ref[0], random_init=False),
        versus.reference_runs(ref[1], random_init=True),
    )
    return result, {g["goal"].split(" minus")[1].split(",")[0]: g for g in result["goals"]}


def test_goals_are_judged_on_paired_seeds(tmp_path):
    cells = [cell("pretrained_torch_recipe", s, 0.50 + 0.01 * s, 0.70) for s in range(3)]
    cells += [cell("pretrained", s, 0.60, 0.75) for s in range(3)]
    cells += [cell("pretrained_fixed_bn", s, 0.55, 0.72) for s in range(2)]
    cells += [cell("scratch", s, 0.10, a) for s, a in enumerate([0.40, 0.45, 0.46])]
    ref = reference(tmp_path / "ref.json", False, [0.53, 0.50, 0.54], [0.7] * 3)
    result, goals = judge(tmp_path, cells, (ref, None))
    torchvision, scratch = goals[" torchvision's"], goals[" tlx random init's"]
    assert torchvision["differences"] == pytest.approx([-0.03, 0.01, -0.02])
    assert torchvision["mean"] == pytest.approx(-0.04 / 3) and torchvision["verdict"] == "met"
    assert scratch["differences"] == pytest.approx([0.35, 0.30, 0.29])
    assert scratch["verdict"] == "met"  # the mean is 0.313; one seed alone is below
    assert result["context"]["tlx random init minus torchvision's, mAP"]["n"] == 0
    trained_bn = result["context"]["BatchNorm scale and bias trained minus fixed (tlx), mAP"]
    assert trained_bn["differences"] == pytest.approx([0.05, 0.05])
    optimizer = "torch's momentum cycling and bias decay minus tlx's SGD (BatchNorm fixed), mAP"
    assert result["context"][optimizer]["differences"] == pytest.approx([-0.05, -0.04])

    below = [cell("pretrained_torch_recipe", s, 0.50, 0.70) for s in range(3)]
    _, goals = judge(tmp_path, below + cells[3:], (ref, None))
    assert goals[" torchvision's"]["verdict"] == "not met"  # 0.50 against 0.523 on average


def test_fewer_than_three_paired_seeds_leave_a_goal_pending(tmp_path):
    cells = [cell("pretrained", s, 0.5, 0.8) for s in range(3)] + [cell("scratch", 0, 0.1, 0.3)]
    cells += [cell("pretrained_torch_recipe", s, 0.5, 0.8) for s in range(3)]
    ref = reference(tmp_path / "ref.json", False, [0.5, 0.5], [0.7, 0.7])  # seeds 0 and 1
    _, goals = judge(tmp_path, cells, (ref, None))
    assert goals[" torchvision's"]["verdict"] == "pending: 2 of 3 seeds paired"
    assert goals[" tlx random init's"]["verdict"] == "pending: 1 of 3 seeds paired"
    assert goals[" tlx random init's"]["differences"] == pytest.approx([0.5])


def test_a_reference_of_the_other_initialisation_is_refused(tmp_path):
    scratch = reference(tmp_path / "scratch.json", True, [0.07], [0.17])
    with pytest.raises(ValueError, match="random_init=True, expected False.*--reference_scratch"):
        versus.reference_runs(scratch, random_init=False)
    assert versus.reference_runs(tmp_path / "not_made_yet.json", random_init=False) == {}


def test_records_without_test_results_say_what_was_expected(tmp_path):
    broken = cell("pretrained", 0, 0.5, 0.8)
    broken["summary"]["results"] = {"validation": {"mAP": 0.5}}
    records = write_records(tmp_path / "s_records.jsonl.gz", [broken])
    with pytest.raises(ValueError, match="no test results.*faster_rcnn_fashiondet_study"):
        versus.tlx_runs(records)


def test_the_published_comparison_regenerates_from_its_inputs():
    published = RESULTS / "frcnn_versus_torchvision.md"
    if not published.exists():
        pytest.skip("no comparison published yet")
    command = published.read_text().split("Made by `")[1].split("`")[0]
    args = dict(a.lstrip("-").split("=", 1) for a in command.split()[3:])
    root = RESULTS.parents[1]
    result = versus.compare(
        versus.tlx_runs(root / args["records"]),
        versus.reference_runs(root / args["reference"], random_init=False),
        versus.reference_runs(
            root / args["reference_scratch"] if "reference_scratch" in args else None, True
        ),
    )
    assert versus.markdown(result, command) == published.read_text()
