"""Predict with a trained run.

    python -m tlx.predict --workdir=runs/rt "I love this product!" "A tedious mess."

Prints each input's most likely label and its probability (``--top_k`` for more).
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags, logging

from tlx import runtime

_WORKDIR = flags.DEFINE_string("workdir", None, "A folder written by tlx.train.")
_TOP_K = flags.DEFINE_integer("top_k", 1, "How many labels to print per input.")
flags.mark_flags_as_required(["workdir"])


def load_run(workdir: str | Path):
    """(experiment without data, params) from a run's config.json and latest checkpoint."""
    import ml_collections

    from tlx.checkpoint import Checkpoints
    from tlx.experiment import build_experiment
    from tlx.trainer import initial_params

    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{config_path} not found: --workdir must be a folder written by tlx.train."
        )
    config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
    config.init_from = ""  # the run's own checkpoint replaces every parameter below
    experiment = build_experiment(config, with_data=False)
    import jax

    params, model_state = initial_params(experiment, jax.random.key(0), log=lambda *_: None)
    params = Checkpoints(workdir / "checkpoints").restore_params(params_like=params)
    return experiment, params, model_state


def predict_texts(experiment, params, model_state, texts: list[str]):
    """Class probabilities [N, C] for raw texts, through the run's own tokenisation."""
    import jax
    import numpy as np

    from tlx.data.text import make_eval_batches
    from tlx.steps import make_predict_fn

    data_cfg = experiment.config["data"]
    batches = make_eval_batches(
        [{"text": t, "label": 0} for t in texts],
        experiment.model.tokenizer,
        batch_size=max(len(texts), 1),
        max_length=int(data_cfg["max_length"]),
        buckets=tuple(data_cfg["buckets"]),
    )
    predict = jax.jit(make_predict_fn(experiment.model.forward))
    probs = [np.asarray(predict(params, model_state, b))[b["weight"] > 0] for b in batches]
    return np.concatenate(probs)


def main(argv):
    texts = argv[1:]
    if not texts:
        raise app.UsageError('Give one or more texts, e.g. "I love this product!"')
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    runtime.configure()
    experiment, params, model_state = load_run(_WORKDIR.value)
    probs = predict_texts(experiment, params, model_state, texts)
    for text, p in zip(texts, probs):
        order = p.argsort()[::-1][: _TOP_K.value]
        labels = ", ".join(f"{experiment.label_names[i]} {p[i]:.3f}" for i in order)
        print(f"{labels}\t{text}")


if __name__ == "__main__":
    app.run(main)
