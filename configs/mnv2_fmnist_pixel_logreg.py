"""The classical baseline for MobileNetV2 -> Fashion-MNIST: logistic regression (scikit-learn,
tlx.baselines) on the raw pixels scaled to [0, 1] and standardised, C chosen from
`model.kwargs.c_grid` on the validation split; the same splits, the same class-stratified 1,000
labels for each seed (`data.train_examples`, 0: all 54,000) as configs/mnv2_fmnist_*.py.

    python -m tlx.train --config=configs/mnv2_fmnist_pixel_logreg.py --workdir=runs/pixels_fmnist

Result (2-core AMD EPYC CPU shared with other jobs, 2026-12-05, seed 0), C chosen on validation
accuracy from the grid:
- 1,000 labels: test accuracy 0.7978 (loss 0.6481), validation 0.8107 at C=0.01; 57 s for the
  5 fits, 61 s wall. MobileNetV2 on the same labels: from scratch 0.7492
  (configs/mnv2_fmnist_scratch.py), fine-tuned from ImageNet 0.8633 (mnv2_fmnist_finetune.py).
- all 54,000 (`--config.data.train_examples=0`): test 0.8449 (loss 0.4379), validation 0.8615 at
  C=0.01; 1,182 s (20 min) for the 5 fits, C=1 stopping unconverged at max_iter=1000. The
  dataset's authors list logistic regression on raw pixels at about 0.84.
"""

import ml_collections

from configs.common import as_one_fit
from configs.mnv2_fmnist_base import base_config


def get_config(arg=None):
    config = base_config()
    config.model = ml_collections.ConfigDict()
    config.model.name = "pixel_logreg"
    config.model.kwargs = ml_collections.ConfigDict(
        {
            "c_grid": (1e-4, 1e-3, 1e-2, 1e-1, 1.0),  # tried on validation
            "max_iter": 1000,  # lbfgs iterations per fit
        }
    )
    return as_one_fit(config)
