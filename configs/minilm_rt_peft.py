"""Parameter-efficient transfer, all-MiniLM-L6-v2 -> Rotten Tomatoes (issue 25, item 5): full
fine-tuning, feature extraction, LoRA at ranks 4 / 8 / 16 on the attention's query and value
kernels (Hu et al.'s choice; alpha = 2r, so every rank updates at the same scale), BitFit,
bottleneck adapters (m = 64, Houlsby's placement) and a 20-vector prompt, 3 seeds, all 10,209
labels, 360 steps at batch 32, every cell reported at its best validation accuracy (evaluated
every 60 steps), as the selected strategy ablation (configs/minilm_rt_ablation_selected.py).

    python -m experiments.sweep --config=configs/minilm_rt_peft.py --workdir=runs/peft_rt
    python -m experiments.aggregate --workdir=runs/peft_rt --group_by=strategy --over=seed \\
        --time_to=0.75,0.8 --paired_against=strategy=finetune --x_axis=trainable_params \\
        --out=experiments/results/peft_minilm_rt

Learning rates are the methods' usual ones (a method that trains few parameters needs a larger
step): finetune the family's 1e-4, LoRA and adapters 5e-4, BitFit 1e-3, the prompt 1e-2 (Lester
et al. used 0.3 with Adafactor); the fresh head at 1e-3 in every row; declared here, before the
run. Each cell's table
row carries its trainable parameters (the freeze audit), peak memory and step time.
"""

from configs.common import peft_rows, select_best_of, strategy_sweep
from configs.minilm_rt_base import base_config

LORA_TARGETS = "attention/self/(query|value)/kernel"


def rows(learning_rate: float) -> dict[str, dict[str, object]]:
    """strategy -> every swept field (configs.common.peft_rows, with BERT's own methods)."""
    return peft_rows(
        learning_rate=learning_rate,
        head_rate=1e-3,
        lora_targets=LORA_TARGETS,
        lora_rate=5e-4,
        bitfit_rate=1e-3,
        more={
            "adapters": {"peft.method": "adapters", "optim.learning_rate": 5e-4},
            "prompt": {"peft.method": "prompt", "optim.learning_rate": 1e-2},
        },
    )


def get_config(arg=None):
    config = base_config()
    config.strategy = "finetune"  # a label for the aggregation; the swept fields decide the run
    config.sweep = strategy_sweep(rows(config.optim.learning_rate), seeds_first=True)
    return select_best_of(config, every=60)
