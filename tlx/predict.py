"""Predict with a trained run.

    python -m tlx.predict --workdir=runs/rt "I love this product!" "A tedious mess."
    python -m tlx.predict --workdir=runs/fmnist --top_k=3 photo.jpg scan.png

Prints each input's most likely label and its probability (``--top_k`` for more). Text runs take
texts; image runs take image files, preprocessed exactly as the run's evaluation data.
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
    checkpoints = Checkpoints(workdir / "checkpoints")
    params = checkpoints.restore_params(params_like=params)
    model_state = checkpoints.restore_model_state(model_state)
    return experiment, params, model_state


def predict_texts(experiment, params, model_state, texts: list[str]):
    """Class probabilities [N, C] for raw texts, through the run's own tokenisation."""
    from tlx.data.text import make_eval_batches

    data_cfg = experiment.config["data"]
    batches = make_eval_batches(
        [{"text": t, "label": 0} for t in texts],
        experiment.model.tokenizer,
        batch_size=max(len(texts), 1),
        max_length=int(data_cfg["max_length"]),
        buckets=tuple(data_cfg["buckets"]),
    )
    return _probabilities(experiment, params, model_state, batches)


def _probabilities(experiment, params, model_state, batches):
    """Softmax over the real rows (weight > 0) of evaluation-style batches, concatenated."""
    import jax
    import numpy as np

    from tlx.steps import make_predict_fn

    predict = jax.jit(make_predict_fn(experiment.model.forward))
    probs = [np.asarray(predict(params, model_state, b))[b["weight"] > 0] for b in batches]
    return np.concatenate(probs)


def read_images(paths: list[str]) -> list:
    """uint8 HWC arrays (grayscale kept 2-d/1-channel; the pipeline makes it RGB)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    images = []
    for path in paths:
        try:
            with Image.open(path) as img:
                images.append(np.asarray(img.convert("L" if img.mode in ("L", "1") else "RGB")))
        except (FileNotFoundError, UnidentifiedImageError, OSError) as e:
            raise app.UsageError(f"Cannot read image {path!r}: {e}") from None
    return images


def predict_images(experiment, params, model_state, images: list):
    """Class probabilities [N, C] for uint8 images, through the run's evaluation preprocessing."""

    from tlx.data.images import make_image_eval_batches

    batches = make_image_eval_batches(
        [{"image": img, "label": 0} for img in images],
        experiment.model.preprocessing,
        batch_size=max(len(images), 1),
    )
    return _probabilities(experiment, params, model_state, batches)


def main(argv):
    inputs = argv[1:]
    if not inputs:
        raise app.UsageError('Give texts ("I love this product!") or image files (photo.jpg).')
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    runtime.configure()
    experiment, params, model_state = load_run(_WORKDIR.value)
    if experiment.model.preprocessing is not None:
        probs = predict_images(experiment, params, model_state, read_images(inputs))
    else:
        probs = predict_texts(experiment, params, model_state, inputs)
    for text, p in zip(inputs, probs):
        order = p.argsort()[::-1][: _TOP_K.value]
        labels = ", ".join(f"{experiment.label_names[i]} {p[i]:.3f}" for i in order)
        print(f"{labels}\t{text}")


if __name__ == "__main__":
    app.run(main)
