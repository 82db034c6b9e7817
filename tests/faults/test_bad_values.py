"""Every bad learning rate the issue found, given to the real entry point: refused before any
compute, with a short message naming the key, and nothing written."""

import pytest

from tests.faults.conftest import launch, short_error, train_args


@pytest.mark.parametrize("value", ["-0.01", "nan", "inf", "1e9", "0"])
def test_a_bad_learning_rate_is_refused_before_anything_is_written(
    value, tiny_bert_dir, rt_data_dir, tmp_path
):
    workdir = tmp_path / "run"
    args = train_args(tiny_bert_dir, rt_data_dir, workdir, f"--config.optim.learning_rate={value}")
    message = short_error(launch(args, module="tlx.train"))
    assert f"config.optim.learning_rate={value}" in message.replace("1000000000.0", "1e9")
    assert "must be a finite number in (0, 10]" in message
    assert not workdir.exists() or not any(workdir.iterdir())


def test_several_bad_values_are_reported_together(tiny_bert_dir, rt_data_dir, tmp_path):
    bad = [
        "--config.optim.weight_decay=-1",
        "--config.optim.clip_norm=-1",
        "--config.model.classifier_dropout=1.0",
        "--config.optim.warmup_steps=100",
    ]
    message = short_error(launch(train_args(tiny_bert_dir, rt_data_dir, tmp_path / "r", *bad)))
    for key in ("weight_decay", "clip_norm", "classifier_dropout", "warmup_steps"):
        assert f"config.{'model' if 'dropout' in key else 'optim'}.{key}=" in message, message
