"""all-MiniLM-L6-v2 -> Rotten Tomatoes, full fine-tuning: every group trains from step 0.

    python -m tlx.train --config=configs/minilm_rt_finetune.py --workdir=runs/minilm_rt_finetune

Result (2-core AMD EPYC CPU, 2026-11-26, one `tlx.train` process; the `strategy=finetune` cell of
`python -m experiments.sweep --config=configs/minilm_rt_plans.py --workdir=runs/plans`): test
accuracy 0.8455, validation 0.8118, wall time 13.9 min including start-up and compilation (its
first minutes shared the machine with a package installation, so about a minute of that is
contention).
"""

from configs.minilm_rt_base import base_config


def get_config(arg=None):
    config = base_config()
    config.plan.name = "finetune"
    return config
