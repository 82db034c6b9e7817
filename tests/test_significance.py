"""experiments.aggregate.significance: cells paired by seed against a reference group, the mean
difference with its 95% t interval and paired t-test, "within noise" when the interval holds 0,
unpaired seeds listed; and `python -m experiments.aggregate --paired_against=FIELD=VALUE`."""

import csv
import math

import pytest

from experiments import aggregate as agg
from experiments.aggregate import significance as sig
from tests.test_cli import run
from tests.test_sweep import fabricate


def rows_of(values, status="finished", **keys):
    """Table rows (as aggregate.cell_row writes them): {seed: test accuracy} for one group."""
    label = ",".join(f"{k}={v}" for k, v in keys.items())
    return [
        {"cell": f"{label},seed={seed}", "status": status, "seed": seed, **keys, "test_accuracy": v}
        for seed, v in values.items()
    ]


def test_hand_computed_differences_and_an_interval_that_holds_zero():
    # differences 0.01, 0.02, 0.03: mean 0.02, std 0.01, t = 0.02 / (0.01 / sqrt 3) = 2 sqrt 3;
    # with 2 degrees of freedom the t distribution has a closed form: F(x) = 1/2 + x / (2
    # sqrt(2 + x^2)), so the 97.5% quantile is sqrt(2 q^2 / (1 - q^2)) with q = 0.95, and the
    # two-sided p is 1 - t / sqrt(2 + t^2).
    stats = sig.paired_stats([0.81, 0.82, 0.83], [0.80, 0.80, 0.80])
    q975 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))
    assert q975 == pytest.approx(4.302653, abs=1e-6)  # the printed t table's 4.303
    half = q975 * 0.01 / math.sqrt(3)
    t = 2 * math.sqrt(3)
    assert stats["n"] == 3
    assert stats["mean"] == pytest.approx(0.02) and stats["std"] == pytest.approx(0.01)
    assert stats["ci_low"] == pytest.approx(0.02 - half) and stats["ci_high"] == pytest.approx(
        0.02 + half
    )
    assert stats["ci_low"] < 0 < stats["ci_high"]  # every seed gained, yet within noise
    assert stats["t"] == pytest.approx(t)
    assert stats["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t))  # 0.0742
    assert stats["within_noise"] is True
    assert "small n (3 pairs)" in stats["note"]


def test_an_interval_clear_of_zero_is_not_within_noise():
    stats = sig.paired_stats([0.81, 0.811, 0.812], [0.80, 0.80, 0.80])
    assert stats["ci_low"] > 0 and stats["within_noise"] is False and stats["p"] < 0.01
    worse = sig.paired_stats([0.80, 0.80, 0.80], [0.81, 0.811, 0.812])  # the sign follows a - b
    assert worse["ci_high"] < 0 and worse["mean"] == pytest.approx(-0.011)
    many = sig.paired_stats([0.5 + i / 100 for i in range(6)], [0.5] * 6)
    assert many["note"] == ""  # 6 pairs: not called small


def test_fewer_than_two_pairs_give_no_test_and_say_why():
    one = sig.paired_stats([0.9], [0.8])
    assert one["n"] == 1 and one["mean"] == pytest.approx(0.1)
    assert math.isnan(one["ci_low"]) and math.isnan(one["p"]) and one["within_noise"] is None
    assert one["note"] == "1 pair: no test (a t interval needs 2 or more)"
    none = sig.paired_stats([], [])
    assert none["n"] == 0 and none["note"].startswith("no pairs: no test")
    same = sig.paired_stats([0.9, 0.8], [0.8, 0.7])  # no spread: t undefined
    assert same["within_noise"] is False and math.isnan(same["p"]) and "no spread" in same["note"]
    assert same["ci_low"] == same["ci_high"] == pytest.approx(0.1)
    tied = sig.paired_stats([0.9, 0.8], [0.9, 0.8])
    assert tied["within_noise"] is True and tied["ci_low"] == tied["ci_high"] == 0


def test_cells_pair_by_seed_not_by_order_and_unpaired_seeds_are_listed():
    rows = rows_of({0: 0.80, 1: 0.90, 2: 0.70}, strategy="finetune")
    # listed in another order, and with a seed the reference lacks
    rows += rows_of({2: 0.72, 3: 0.99, 0: 0.81, 1: 0.93}, strategy="freeze")
    [c] = sig.compare(rows, ["strategy"], "seed", "test_accuracy", ("strategy", "finetune"))
    assert c["label"] == "strategy=freeze" and c["reference"] == "strategy=finetune"
    assert c["paired"] == ["0", "1", "2"] and c["n"] == 3
    assert c["mean"] == pytest.approx((0.01 + 0.03 + 0.02) / 3)  # by order it would differ
    assert c["mean_value"] == pytest.approx((0.81 + 0.93 + 0.72) / 3)
    assert c["left_out"] == ["seed=3: not in strategy=finetune"]
    # the reference's own extra seed is listed too, and a seed with a blank metric
    rows += rows_of({4: 0.5}, strategy="finetune") + rows_of({5: ""}, strategy="freeze")
    rows += rows_of({5: 0.5}, strategy="finetune")
    [c] = sig.compare(rows, ["strategy"], "seed", "test_accuracy", ("strategy", "finetune"))
    assert c["left_out"] == [
        "seed=5: no test_accuracy in strategy=freeze",
        "seed=3: not in strategy=finetune",
        "seed=4: not in strategy=freeze",
    ]
    md = sig.markdown([c], ["strategy"], "seed", "test_accuracy", ("strategy", "finetune"))
    assert "Left out, unpaired (not in the numbers above; 3):" in md
    assert "- strategy=freeze: seed=4: not in strategy=freeze" in md


def test_unfinished_and_duplicate_cells_are_left_out_not_paired():
    rows = rows_of({0: 0.8, 1: 0.8}, strategy="a") + rows_of({0: 0.9}, strategy="b")
    rows += rows_of({1: 0.95}, status="missing", strategy="b")
    rows += rows_of({0: 0.7}, strategy="b", lr=1)  # another cell for seed 0 in group b
    [c] = sig.compare(rows, ["strategy"], "seed", "test_accuracy", ("strategy", "a"))
    assert c["n"] == 0 and c["within_noise"] is None and c["note"].startswith("no pairs")
    assert c["left_out"] == [
        "seed=0: 2 cells in strategy=b, ambiguous pair",
        "seed=1: not in strategy=b",
    ]


def test_two_keys_compare_within_each_value_of_the_other():
    rows = []
    for n, (transfer, scratch) in {100: (0.70, 0.55), 300: (0.75, 0.75)}.items():
        rows += rows_of({0: transfer, 1: transfer + 0.02}, strategy="transfer", examples=n)
        rows += rows_of({0: scratch, 1: scratch - 0.01}, strategy="scratch", examples=n)
    rows += rows_of({0: 0.5, 1: 0.6}, strategy="scratch", examples=1000)  # no transfer at 1000
    group_by = ["strategy", "examples"]
    out = sig.compare(rows, group_by, "seed", "test_accuracy", ("strategy", "transfer"))
    by = {c["keys"]["examples"]: c for c in out}
    assert set(by) == {"100", "300", "1000"} and all(
        c["keys"]["strategy"] == "scratch" for c in out
    )
    assert by["100"]["reference"] == "strategy=transfer, examples=100"
    assert by["100"]["mean"] == pytest.approx(-0.165) and by["300"]["mean"] == pytest.approx(-0.015)
    assert by["1000"]["n"] == 0
    assert by["1000"]["left_out"] == [
        "seed=0, 1: no finished reference group strategy=transfer, examples=1000"
    ]
    md = sig.markdown(out, group_by, "seed", "test_accuracy", ("strategy", "transfer"))
    assert "minus that of `strategy=transfer` at each `examples` on the same `seed`" in md
    assert "| scratch | 1000 | 0 | - | - | - | - | - | - | no test | - | - |" in md


def test_holm_adjusts_by_rank_keeps_the_order_and_skips_comparisons_without_a_test():
    # m = 3 tested: sorted 0.01, 0.02, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.02), max(0.04, 1 * 0.04)
    adjusted = sig.holm_adjusted([0.04, math.nan, 0.01, 0.02])
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.04)
    # monotone in rank: a larger p never gets a smaller adjusted p, and nothing exceeds 1
    assert sig.holm_adjusted([0.03, 0.031, 0.9]) == pytest.approx([0.09, 0.09, 0.9])
    assert sig.holm_adjusted([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert sig.holm_adjusted([]) == []


def test_a_difference_clear_alone_may_not_hold_after_holm():
    # three scratch arms against transfer, each on 3 seeds; one clear, two within noise
    rows = rows_of({0: 0.80, 1: 0.82, 2: 0.81}, strategy="transfer")
    rows += rows_of({0: 0.70, 1: 0.721, 2: 0.709}, strategy="clear")
    rows += rows_of({0: 0.79, 1: 0.83, 2: 0.80}, strategy="noise_a")
    rows += rows_of({0: 0.81, 1: 0.80, 2: 0.82}, strategy="noise_b")
    out = sig.compare(rows, ["strategy"], "seed", "test_accuracy", ("strategy", "transfer"))
    by = {c["keys"]["strategy"]: c for c in out}
    ps = sorted(c["p"] for c in out)
    assert by["clear"]["p"] == ps[0] and by["clear"]["p_holm"] == pytest.approx(3 * ps[0])
    assert by["clear"]["holds_after_holm"] is True and by["clear"]["within_noise"] is False
    assert by["noise_a"]["holds_after_holm"] is False and by["noise_b"]["holds_after_holm"] is False
    md = sig.markdown(out, ["strategy"], "seed", "test_accuracy", ("strategy", "transfer"))
    assert "across the 3 comparisons with a test" in md
    assert "| within noise | p (Holm) | holds after Holm | note |" in md
    # a group that misses by a hair alone fails once two more comparisons share the 5%
    near = rows_of({0: 0.80, 1: 0.82, 2: 0.81}, strategy="transfer")
    near += rows_of({0: 0.78, 1: 0.81, 2: 0.79}, strategy="near")
    alone = sig.compare(near, ["strategy"], "seed", "test_accuracy", ("strategy", "transfer"))[0]
    assert alone["p"] < 0.05 and alone["holds_after_holm"] is True
    family = sig.compare(
        near + rows[3:], ["strategy"], "seed", "test_accuracy", ("strategy", "transfer")
    )
    assert {c["keys"]["strategy"]: c for c in family}["near"]["holds_after_holm"] is False


def test_a_reference_or_metric_that_is_not_there_is_an_error():
    rows = rows_of({0: 0.8}, strategy="a") + rows_of({0: 0.9}, strategy="b")
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        sig.parse_reference("finetune", ["strategy"])
    with pytest.raises(ValueError, match="'plan' is not a --group_by key"):
        sig.parse_reference("plan=finetune", ["strategy"])
    with pytest.raises(ValueError, match=r"no finished group has strategy=c; .*\['a', 'b'\]"):
        sig.compare(rows, ["strategy"], "seed", "test_accuracy", ("strategy", "c"))
    with pytest.raises(ValueError, match="--metric='test_loss' is not a column"):
        sig.compare(rows, ["strategy"], "seed", "test_loss", ("strategy", "a"))


def test_the_command_line_writes_the_significance_files_beside_an_unchanged_table(tmp_path):
    fabricate(tmp_path / "sweep")  # finetune seeds 0-2 at 0.80, 0.82, 0.84; progressive 0.70, 0.75
    result = agg.aggregate(tmp_path / "sweep", group_by=None, over="seed")
    [records] = agg.publish_records(result, tmp_path / "abl")
    common = [f"--records={records}", "--group_by=plan.name", "--over=seed"]
    plain = run("-m", "experiments.aggregate", *common, f"--out={tmp_path / 'plain' / 'abl'}")
    assert plain.returncode == 0, plain.stderr
    assert not list((tmp_path / "plain").glob("*significance*"))
    done = run(
        "-m",
        "experiments.aggregate",
        *common,
        "--paired_against=plan.name=finetune",
        f"--out={tmp_path / 'sig' / 'abl'}",
    )
    assert done.returncode == 0, done.stderr
    # the table and CSV as without the flag; the significance table printed and written
    assert (tmp_path / "sig" / "abl.csv").read_bytes() == (
        tmp_path / "plain" / "abl.csv"
    ).read_bytes()
    table = (tmp_path / "plain" / "abl.md").read_text().split("Mean ± sample std", 1)[1]
    assert (tmp_path / "sig" / "abl.md").read_text().endswith(table)
    md = (tmp_path / "sig" / "abl_significance.md").read_text()
    assert md.startswith("# abl_significance\n")
    assert f"Made by `python -m experiments.aggregate {' '.join(common)} --paired_against" in md
    assert "--out" not in md.split("\n")[2].split("`")[1]
    assert "| progressive | 2 | 0.7250 | 0.8100 | -0.0850 | 0.0212 |" in md
    assert "- plan.name=progressive: seed=2: not in plan.name=progressive" in md
    assert "| progressive | 2 |" in done.stdout and f"wrote {tmp_path / 'sig'}" in done.stdout
    with open(tmp_path / "sig" / "abl_significance.csv") as f:
        [row] = list(csv.DictReader(f))
    # differences -0.10 and -0.07: 1 degree of freedom, where t is the Cauchy distribution:
    # quantile tan(pi (q - 1/2)), two-sided p = 1 - 2 atan(|t|) / pi
    half = math.tan(math.pi * 0.475) * 0.015
    t = -0.085 / 0.015
    assert row["plan.name"] == "progressive" and row["reference"] == "plan.name=finetune"
    assert (row["n_pairs"], row["paired"], row["metric"]) == ("2", "0 1", "test_accuracy")
    assert float(row["mean_difference"]) == pytest.approx(-0.085)
    assert float(row["ci_low"]) == pytest.approx(-0.085 - half)
    assert float(row["ci_high"]) == pytest.approx(-0.085 + half)
    assert float(row["p_value"]) == pytest.approx(1 - 2 * math.atan(abs(t)) / math.pi)
    assert (
        row["within_noise"] == "True" and row["left_out"] == "seed=2: not in plan.name=progressive"
    )

    bad = run("-m", "experiments.aggregate", *common, "--paired_against=plan.name=nope")
    assert bad.returncode != 0
    assert "no finished group has plan.name=nope" in bad.stderr + bad.stdout
