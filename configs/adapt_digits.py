"""Digits across sources: the small CNN trained on MNIST adapted to UCI digits without their
labels, and the reverse (configs/digits_source.py trains the source models), 3 seeds.

    python -m experiments.sweep --config=configs/digits_source.py --workdir=runs/digits_source
    python -m experiments.sweep --config=configs/adapt_digits.py --workdir=runs/adapt_digits
    python -m experiments.aggregate --workdir=runs/adapt_digits \\
        --group_by=data.name,strategy --over=seed --metric=target_test_accuracy \\
        --out=experiments/results/adaptation_digits

Rows as in configs/adapt_fmnist_c.py: source-only (`none`), AdaBN (statistics from the target's
unlabelled train split: 1,257 UCI or 3,500 MNIST images), TENT (32 steps of 128 target images:
about one pass over MNIST's, three over UCI's; BatchNorm scale and bias alone, Adam 1e-3),
FixMatch pseudo-labels (its strong view a crop without the flip) and Deep CORAL (300 steps each).
The target oracle is the target's own source
model (configs/digits_source.py, trained and selected on the target's labels): its test accuracy
is the upper end of the gap. Scored on the target's test split (360 UCI / 1,000 MNIST images).
"""

from configs.adapt_fmnist_c import METHOD_ROWS, adapt_section
from configs.adapt_fmnist_c import get_config as adapt_config
from configs.digits_source import DIRECTIONS
from configs.digits_source import get_config as source_config

SOURCE_RUNS = "runs/digits_source"
SEEDS = (0, 1, 2)


def get_config(arg=None):
    config = adapt_config()
    source = source_config()
    config.data.name, target = DIRECTIONS[0]
    config.data.augment = source.data.augment
    # each cell starts from the source run of its own dataset and seed
    config.init_from = SOURCE_RUNS + "/data.name={data.name},seed={seed}"
    config.adapt = adapt_section("adabn", target)
    config.adapt.strong_augment = "crop"  # a mirrored digit is another shape
    directions = ",".join(f"('{source}','{target}')" for source, target in DIRECTIONS)
    config.sweep = (
        f"(data.name,adapt.target)=[{directions}];seed=[{','.join(map(str, SEEDS))}];"
        f"(strategy,adapt.method,total_steps,model.frozen_batchnorm,plan.name,adapt.endpoint)={METHOD_ROWS}"
    )
    return config
