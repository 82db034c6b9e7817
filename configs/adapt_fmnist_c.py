"""Corruption adaptation: the clean Fashion-MNIST small CNN (configs/fmnist_small_cnn_bn.py)
adapted to ImageNet-C corruptions of Fashion-MNIST's test images, and to the same images on photo
backgrounds, without their labels, 3 seeds.

    python -m experiments.sweep --config=configs/fmnist_small_cnn_bn.py --workdir=runs/adapt_source
    python -m experiments.sweep --config=configs/adapt_fmnist_c.py --workdir=runs/adapt_fmnist_c
    python -m experiments.aggregate --workdir=runs/adapt_fmnist_c \\
        --group_by=adapt.target,strategy --over=seed --metric=target_test_accuracy \\
        --paired_against=strategy=none --gap_closed=strategy=none:oracle \\
        --rows_from=experiments/results/adaptation_fmnist_c_oracle_records.jsonl.gz \\
        --out=experiments/results/adaptation_fmnist_c

Rows (config.adapt.method, see tlx.adaptation):
- `none`: the source model as it is (source-only);
- `adabn`: its BatchNorm statistics re-estimated on the 4,000 unlabelled target images (no
  training: total_steps 0);
- `tent`: AdaBN, then one pass over the target (32 steps of 128 images) minimising the
  prediction entropy with BatchNorm's scale and bias alone trainable (plan "frozen",
  frozen_batchnorm "tent"), Adam 1e-3 constant: the TENT paper's CIFAR protocol (one online
  epoch). The seed-0 pilot ran 100 steps (3.2 epochs) and collapsed to confident errors (entropy
  0.87, below AdaBN on 5 of 6 shifts), so the budget is the paper's, not one tuned here;
- `source_more`: the control for the three below: the same 300 steps on the labelled source
  batches alone (method `none` trains on the source as an ordinary run), so that what the
  target stream adds is not confused with more training of the source model;
- `pseudo_label` (FixMatch), `coral` (Deep CORAL on the 128 `dense_relu` features) and `dann`
  (a 256-unit domain classifier on the same features, Ganin's reversal schedule): 300 steps
  of 64 labelled source and 128 unlabelled target images, every layer training, Adam 1e-3
  constant; FixMatch's threshold 0.95, its strong view a random resized crop (0.35-1) and flip;
- the target oracle, trained on the target's labels: configs/adapt_fmnist_c_oracle.py.
Each cell is scored on the target's 5,000 test images ("target_test"), which no method sees.
Nothing is selected on target labels: AdaBN and the source rows have nothing to select, the
trained methods run their fixed budgets. Shifts: 6 corruptions (noise x2, blur x2, contrast,
and elastic_transform, a geometric distortion that no statistic undoes) at severities 3 and 5,
and the same test items on photo backgrounds (`fashion_mnist_m`: |photo patch - item|, MNIST-M's
construction, the shift DANN was introduced on); 273 cells.
"""

import ml_collections

from configs.fmnist_small_cnn_bn import get_config as source_config

SOURCE_RUNS = "runs/adapt_source"
SEEDS = (0, 1, 2)
CORRUPTIONS = (
    "gaussian_noise",
    "impulse_noise",
    "defocus_blur",
    "motion_blur",
    "contrast",
    "elastic_transform",
)
SEVERITIES = (3, 5)
PHOTO = "fashion_mnist_m"  # the items on photo backgrounds (MNIST-M's recipe)
TARGETS = (*(f"fashion_mnist_c/{c}/{s}" for s in SEVERITIES for c in CORRUPTIONS), PHOTO)
DEFAULT_TARGET = "fashion_mnist_c/elastic_transform/5"  # the config run alone, outside the sweep
# (strategy, adapt.method, total_steps, model.frozen_batchnorm, plan.name, adapt.endpoint)
METHOD_ROWS = (
    "[('none','none',0,'frozen','frozen',''),"
    "('source_more','none',300,'frozen','finetune',''),"
    "('adabn','adabn',0,'frozen','frozen',''),"
    "('tent','tent',32,'tent','frozen',''),"
    "('pseudo_label','pseudo_label',300,'frozen','finetune',''),"
    "('coral','coral',300,'frozen','finetune','dense_relu'),"
    "('dann','dann',300,'frozen','finetune','dense_relu')]"
)


def adapt_section(method: str, target: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "method": method,
            "target": target,
            "target_split": "train",
            "eval_splits": ("test",),
            "statistics": None,
            "statistics_batch_size": 500,
            "weight": 1.0,
            "target_batch_size": 128,
            "ramp_steps": 0,
            "endpoint": "",
            "domain_hidden": 256,
            "threshold": 0.95,
            "strong_augment": "random_resized_crop",
            "strong_crop_scale": (0.35, 1.0),
        }
    )


def get_config(arg=None):
    config = source_config()
    config.strategy = "adabn"
    config.init_from = SOURCE_RUNS + "/seed={seed}"  # each seed adapts its own source run
    config.adapt = adapt_section("adabn", DEFAULT_TARGET)
    config.total_steps = 0
    config.eval_every = 50
    config.checkpoint_every = 50
    config.selection.metric = ""  # nothing is selected on target labels
    config.selection.patience = 0
    config.data.augment = "none"  # the target stream as it comes
    # the clean splits: the source's own scores (validation also follows TENT's steps)
    config.data.eval_splits = ("validation", "test")
    config.plan.name = "frozen"
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 0
    config.optim.decay = "constant"
    config.optim.weight_decay = 0.0
    targets = ",".join(f"'{t}'" for t in TARGETS)
    config.sweep = (
        f"seed=[{','.join(map(str, SEEDS))}];adapt.target=[{targets}];"
        f"(strategy,adapt.method,total_steps,model.frozen_batchnorm,plan.name,adapt.endpoint)={METHOD_ROWS}"
    )
    return config
