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

from configs.common import select_best_of, strategy_sweep
from configs.minilm_rt_base import base_config

LORA_TARGETS = "attention/self/(query|value)/kernel"


def peft_rows(learning_rate: float) -> dict[str, dict[str, object]]:
    """strategy -> every swept field (a cell never inherits another strategy's value)."""
    common = {
        "plan.name": "finetune",
        "peft.method": "none",
        "peft.targets": "",
        "peft.rank": 8,
        "peft.alpha": 16.0,
        "optim.learning_rate": learning_rate,
        "plan.lr_multipliers": "head=10",
    }
    # The fresh head learns at 1e-3 in every row: its factor is 1e-3 over the row's rate.
    head_at = lambda rate: {
        "optim.learning_rate": rate,
        "plan.lr_multipliers": f"head={1e-3 / rate:g}",
    }
    lora = lambda r: {
        "peft.method": "lora",
        "peft.targets": LORA_TARGETS,
        "peft.rank": r,
        "peft.alpha": 2.0 * r,
        **head_at(5e-4),
    }
    rows = {
        "finetune": {},
        "feature_extraction": {"plan.name": "feature_extraction"},
        "lora_r4": lora(4),
        "lora_r8": lora(8),
        "lora_r16": lora(16),
        "bitfit": {"peft.method": "bitfit", **head_at(1e-3)},
        "adapters": {"peft.method": "adapters", **head_at(5e-4)},
        "prompt": {"peft.method": "prompt", **head_at(1e-2)},
    }
    return {name: {**common, **row} for name, row in rows.items()}


def get_config(arg=None):
    config = base_config()
    config.strategy = "finetune"  # a label for the aggregation; the swept fields decide the run
    config.sweep = strategy_sweep(peft_rows(config.optim.learning_rate), seeds_first=True)
    return select_best_of(config, every=60)
