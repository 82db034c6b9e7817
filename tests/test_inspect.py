"""python -m tlx.inspect: groups, stages and audits without training; bad plans refused."""

import os
import subprocess
import sys

from configs import mnv2_fmnist_progressive
from tlx.experiment import build_experiment
from tlx.inspect import describe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_describe_lists_groups_and_every_stage_audit(image_data_dir):
    config = mnv2_fmnist_progressive.get_config()
    config.data.data_dir = image_data_dir
    text = describe(build_experiment(config, with_data=False))
    assert "Plan progressive(every=60): 10 stage(s)" in text
    assert text.count("Freeze audit, stage") == 10
    assert "stage 9 (from step 540): 2,236,682 of 2,236,682 parameters train (100%)" in text
    stage0 = text.split("Freeze audit, stage 1")[0]
    assert "12,810 of 2,236,682 parameters train" in stage0
    assert stage0.count("FROZEN") == 9  # every group but the head


def test_cli_refuses_a_plan_that_freezes_nothing(image_data_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tlx.inspect",
            "--config=configs/mnv2_fmnist_freeze_to.py",
            "--config.plan.k=10",
            f"--config.data.data_dir={image_data_dir}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode != 0
    assert "would freeze nothing" in result.stderr


def test_describe_shows_an_adaptations_streams_loss_and_bn_parameters(image_data_dir):
    from configs import adapt_fmnist_c

    config = adapt_fmnist_c.get_config()
    config.data.data_dir = image_data_dir
    config.adapt.method, config.total_steps = "tent", 100
    config.model.frozen_batchnorm = "tent"
    text = describe(build_experiment(config, with_data=False))
    assert "Adaptation: tent to fashion_mnist_c/elastic_transform/5" in text
    assert "target stream   fashion_mnist_c/elastic_transform/5 train, unlabelled, 128" in text
    assert "1.0 x mean prediction entropy" in text
    assert "statistics      BatchNorm re-estimated" in text
    # the plan freezes every group; only their BatchNorm scale and bias train
    assert "192 of 1,200,650 parameters train" in text
    assert "conv_1/bn" in text and "conv_2/bn" in text
