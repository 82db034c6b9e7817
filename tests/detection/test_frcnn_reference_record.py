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


def test_the_random_init_reference_trains_every_block_as_tlx_scratch_arm_does():
    from experiments.frcnn_reference import torchvision_detector

    def frozen_blocks(model):
        blocks = model.backbone.body.values()  # features 0-18, in order
        return [i for i, b in enumerate(blocks) if not any(p.requires_grad for p in b.parameters())]

    assert frozen_blocks(torchvision_detector(random_init=True)) == []
    assert frozen_blocks(torchvision_detector(True, frozen_blocks=7)) == list(range(7))
