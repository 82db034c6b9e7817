"""experiments.adapt_diagnose's figures against hand computations."""

import numpy as np
import pytest

from experiments.adapt_diagnose import aligned_cap, domain_separability, markdown, split_diagnosis


def test_a_split_diagnosis_reads_decisions_ranking_and_the_best_threshold():
    # four class-0 inputs, two class-1; the model calls one class-0 input class 1 (p1 = 0.6),
    # and one class-1 input class 0 (p1 = 0.4), ranked below the misread class-0 one
    p1 = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.9])
    labels = np.array([0, 0, 0, 0, 1, 1])
    figures = split_diagnosis(np.stack([1 - p1, p1], axis=-1), labels)
    assert figures["recall_0"] == pytest.approx(0.75) and figures["recall_1"] == pytest.approx(0.5)
    assert figures["balanced_accuracy"] == pytest.approx(0.625)
    assert figures["predicted_share_0"] == pytest.approx(4 / 6)
    assert figures["true_share_0"] == pytest.approx(4 / 6)
    # ranked pairs (class 1 above class 0): 0.4 beats 3 of 4, 0.9 beats 4 of 4 -> 7/8
    assert figures["roc_auc"] == pytest.approx(7 / 8)
    # threshold 0.4: recalls 3/4 and 2/2 -> 0.875, the best any threshold reaches
    assert figures["best_threshold_balanced_accuracy"] == pytest.approx(0.875)


def test_domains_told_apart_only_when_they_differ():
    rng = np.random.default_rng(0)
    same = domain_separability(rng.normal(size=(200, 8)), rng.normal(size=(300, 8)))
    shifted = domain_separability(rng.normal(size=(200, 8)), rng.normal(3.0, size=(300, 8)))
    assert 0.35 < same < 0.65 and shifted > 0.98


def test_the_markdown_names_each_run_and_the_true_share():
    row = {"run": "runs/study/seed=0,strategy=none", "target_test/true_share_0": 0.8}
    row.update({key: 0.5 for key in (
        "target_test/balanced_accuracy", "target_test/recall_0", "target_test/recall_1",
        "target_test/predicted_share_0", "target_test/roc_auc",
        "target_test/best_threshold_balanced_accuracy", "test/balanced_accuracy",
        "test/roc_auc", "domain_separability", "aligned_cap")})  # fmt: skip
    table = markdown([row])
    assert "predicted share 0 (true 0.800)" in table
    assert "| study/seed=0,strategy=none | 0.500 |" in table


def test_aligned_domains_cap_the_balanced_accuracy_a_label_shift_allows():
    # the same prediction shares on both domains: no cap
    assert aligned_cap(0.8, 0.8) == pytest.approx(1.0)
    # half the source predicted 0, 80% of the target is 0: at best 0.5 of the 0.8 class-0 inputs
    # called 0 (recall 0.625) and every class-1 input right
    assert aligned_cap(0.5, 0.8) == pytest.approx((0.625 + 1) / 2)
    # the other side: 90% called 0 on a target with 80% class 0: recall of class 1 is 0.1 / 0.2
    assert aligned_cap(0.9, 0.8) == pytest.approx((1 + 0.5) / 2)


def test_a_run_already_diagnosed_and_unchanged_is_not_computed_again(tmp_path, monkeypatch):
    from experiments import adapt_diagnose

    runs = [tmp_path / "study" / name for name in ("seed=0", "seed=1")]
    for run in runs:
        run.mkdir(parents=True)
        (run / "summary.json").write_text(f'{{"run": "{run.name}"}}')
    computed = []

    def fake_diagnose(workdir, *args):
        computed.append(workdir.name)
        row = {"run": str(workdir), "target_test/true_share_0": 0.8}
        return row | {key: 0.5 for key, _ in adapt_diagnose.COLUMNS[1:]}

    monkeypatch.setattr(adapt_diagnose, "diagnose", fake_diagnose)
    out = tmp_path / "diagnosis"
    study = [f"{tmp_path}/study/*"]
    adapt_diagnose.diagnose_study(study, out, "pooled", "rotten_tomatoes", "negative:rotten")
    assert computed == ["seed=0", "seed=1"]
    (runs[1] / "summary.json").write_text('{"run": "seed=1", "rerun": true}')
    # seed=0 is reused; seed=1 changed, so it is computed again
    adapt_diagnose.diagnose_study(study, out, "pooled", "rotten_tomatoes", "negative:rotten")
    assert computed == ["seed=0", "seed=1", "seed=1"]
    assert out.with_suffix(".md").read_text().startswith("# Where the target error comes from")
