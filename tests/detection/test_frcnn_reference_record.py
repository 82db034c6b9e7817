"""The torchvision reference's record is built one seed at a time, possibly across sessions (a
seed takes ~11 minutes on 2 cores): merge_runs keeps the other seeds, replaces a rerun seed and
refuses to mix runs made with other settings."""

import pytest

from experiments.frcnn_reference import merge_runs

SETTINGS = {"random_init": False, "steps": 400}


def test_seeds_accumulate_in_order_and_a_rerun_replaces_its_seed():
    record = merge_runs(None, SETTINGS, {"seed": 2, "mAP": 0.5})
    record = merge_runs(record, SETTINGS, {"seed": 0, "mAP": 0.4})
    record = merge_runs(record, SETTINGS, {"seed": 2, "mAP": 0.6})
    assert record == {**SETTINGS, "runs": [{"seed": 0, "mAP": 0.4}, {"seed": 2, "mAP": 0.6}]}


def test_a_record_made_with_other_settings_is_not_extended():
    scratch = merge_runs(None, {**SETTINGS, "random_init": True}, {"seed": 0, "mAP": 0.07})
    with pytest.raises(ValueError, match="random_init.*another --out"):
        merge_runs(scratch, SETTINGS, {"seed": 1, "mAP": 0.5})
