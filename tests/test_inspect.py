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
