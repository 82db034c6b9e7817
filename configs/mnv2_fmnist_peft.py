"""Parameter-efficient transfer, MobileNetV2 (ImageNet) -> Fashion-MNIST at 1,000 labels (issue 25,
item 5): full fine-tuning, feature extraction, LoRA at ranks 4 / 8 / 16 on every pointwise
(1x1 expand and project) convolution (alpha = 2r) and BitFit (the BatchNorm biases), 3 seeds,
600 steps, every cell reported at its best validation accuracy (evaluated every 100 steps) on the
whole 28x28 image, as the selected strategy ablation (configs/mnv2_fmnist_ablation_selected.py).
Adapters and prompt tuning are BERT's (tlx refuses them on a CNN), so they have no row here.

    python -m experiments.sweep --config=configs/mnv2_fmnist_peft.py --workdir=runs/peft_mnv2
    python -m experiments.aggregate --workdir=runs/peft_mnv2 --group_by=strategy --over=seed \\
        --time_to=0.8,0.85 --paired_against=strategy=finetune --x_axis=trainable_params \\
        --out=experiments/results/peft_mnv2_fmnist

Learning rates, declared before the run: finetune the family's 3e-4, LoRA 1e-3, BitFit 3e-3
(a method that trains few parameters takes a larger step); the fresh head at 3e-3 in every row
(the family's head=10 over 3e-4). BatchNorm statistics stay the pretrained ones in every row
(model.batchnorm = "frozen"), so a LoRA row changes the convolutions and nothing else.
"""

from configs.common import peft_rows, select_best_of, strategy_sweep
from configs.mnv2_fmnist_base import base_config

LORA_TARGETS = "(expand|project)/conv/kernel"  # the pointwise convolutions of every block


def get_config(arg=None):
    config = base_config()
    config.strategy = "finetune"  # a label for the aggregation; the swept fields decide the run
    config.plan.name = "finetune"
    config.model.resize_size = 64  # the whole image, as the selected ablation
    rows = peft_rows(
        learning_rate=config.optim.learning_rate,
        head_rate=3e-3,
        lora_targets=LORA_TARGETS,
        lora_rate=1e-3,
        bitfit_rate=3e-3,
    )
    config.sweep = strategy_sweep(rows, seeds_first=True)
    return select_best_of(config, every=100)
