"""The source model of the corruption adaptation benchmark (issue: transductive transfer): the
small CNN with BatchNorm after each convolution, trained from scratch on all 54,000 clean
Fashion-MNIST training images and selected on the clean validation split, 3 seeds.

    python -m experiments.sweep --config=configs/fmnist_small_cnn_bn.py --workdir=runs/adapt_source

Each seed's selected checkpoint is what configs/adapt_fmnist_c.py adapts (its `init_from`).
BatchNorm makes the statistics-based methods (AdaBN, TENT) applicable; `model.batchnorm =
"train"` learns the statistics from scratch. Budget: until 4 evaluations (1,000 steps of 64) pass
without a better validation accuracy, at most 4,000 steps (4.7 epochs).
"""

from configs.fmnist_small_cnn import get_config as small_cnn_config


def get_config(arg=None):
    config = small_cnn_config()
    config.strategy = "source"
    config.model.kwargs = {"batch_norm": True}
    config.data.train_examples = 0  # all 54,000 labels
    config.total_steps = 4000
    config.eval_every = 250
    config.checkpoint_every = 250
    config.keep_checkpoints = 1
    config.sweep = "seed=[0,1,2]"
    return config
