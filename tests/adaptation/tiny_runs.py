"""Settings that make any adaptation config a run of a few seconds, for the end-to-end tests."""

QUIET = dict(log=lambda *_: None, progress=False)


def tiny(config, data_dir):
    """64 examples, batches of 16, evaluations and checkpoints every 2 steps, nothing selected."""
    config.data.data_dir = data_dir
    config.data.train_examples = 64
    config.data.eval_examples = 64
    config.data.eval_batch_size = 32
    config.batch_size = 16
    config.eval_every = config.checkpoint_every = config.log_every = 2
    config.optim.warmup_steps = 0
    config.selection.metric = ""
    config.selection.patience = 0
    return config
