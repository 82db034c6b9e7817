"""Predict with a trained run.

    python -m tlx.predict --workdir=runs/rt "I love this product!" "A tedious mess."
    python -m tlx.predict --workdir=runs/fmnist --top_k=3 photo.jpg scan.png
    python -m tlx.predict --workdir=runs/rt --step=200 --json "I love this product!"

Prints each input's most likely label and its probability (``--top_k`` for more), then the input
(a text longer than 80 characters is shown as its first 60 and "…"). Text runs take texts; image
runs take image files, preprocessed exactly as the run's evaluation data. ``--step`` predicts with
that checkpoint instead of the latest. ``--json`` prints one JSON document instead (for scripts):
per input the text or file, the top-k labels with their probabilities and whether it was truncated.

Empty or blank texts are refused before the model is loaded. A text longer than the run's
``data.max_length`` tokens is truncated to them, as in training, with a warning on stderr saying
how many tokens were kept.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import flags, logging

from tlx import cli, run_folder, runtime
from tlx.errors import CheckpointError, InputError

_WORKDIR = flags.DEFINE_string("workdir", None, "A folder written by tlx.train.")
_TOP_K = flags.DEFINE_integer("top_k", 1, "How many labels to print per input.", lower_bound=1)
_STEP = flags.DEFINE_integer(
    "step", None, "Predict with this checkpoint step (default: the latest).", lower_bound=0
)
_JSON = flags.DEFINE_bool(
    "json", False, "Print one JSON document (inputs, top-k labels, probabilities, truncation)."
)
flags.mark_flags_as_required(["workdir"])

PROGRAM = "tlx.predict"
ECHO_MAX_CHARS = 80  # an echoed input longer than this is shortened ...
ECHO_KEPT_CHARS = 60  # ... to its first this many characters and "…"


def load_run(workdir: str | Path, step: int | None = None):
    """(experiment without data, params, model_state) from a run's config.json and checkpoint
    `step` (default: the latest)."""
    experiment, params, model_state, _ = _load_run(workdir, step)
    return experiment, params, model_state


def read_run_config(workdir: str | Path):
    """A run's config as it now stands (tlx.run_folder.read_config), or InputError saying what
    --workdir must be."""
    import ml_collections

    try:
        config = run_folder.read_config(workdir)
    except FileNotFoundError as e:
        raise InputError(f"--workdir={e}") from None
    except (OSError, ValueError) as e:
        raise InputError(
            f"{Path(workdir) / run_folder.CONFIG} is not readable JSON ({e}): expected the "
            "config.json that tlx.train wrote; the run folder is damaged."
        ) from None
    return ml_collections.ConfigDict(config)


def _load_run(workdir: str | Path, step: int | None):
    from tlx.checkpoint import Checkpoints
    from tlx.experiment import build_experiment
    from tlx.trainer import initial_params

    workdir = Path(workdir)
    config = read_run_config(workdir)
    config.init_from = ""  # the run's own checkpoint replaces every parameter below
    experiment = build_experiment(config, with_data=False)
    import jax

    params, model_state = initial_params(experiment, jax.random.key(0), log=lambda *_: None)
    checkpoints = Checkpoints(workdir / run_folder.CHECKPOINTS)
    chosen = checkpoints.latest_step() if step is None else step
    try:
        params = checkpoints.restore_params(step=chosen, params_like=params)
        model_state = checkpoints.restore_model_state(model_state, step=chosen)
    except CheckpointError as e:
        if step is not None or chosen is None:  # the user's own choice, or nothing to offer
            raise
        # Never a silent fallback: the user chooses, knowing which step they get.
        intact = checkpoints.intact_steps(exclude=chosen)
        choice = (
            f"Predict with the newest intact one: --step={intact[0]}."
            if intact
            else "No other checkpoint is intact."
        )
        raise type(e)(f"{e} {choice}") from e
    return experiment, params, model_state, chosen


def check_inputs(inputs: list[str]) -> None:
    """Refuse no inputs, and empty or blank ones, before anything is loaded."""
    if not inputs:
        raise InputError(
            'no inputs: give texts ("I love this product!") or image files (photo.jpg) after '
            "the flags."
        )
    for number, text in enumerate(inputs, start=1):
        if not text.strip():
            found = "empty" if not text else f"blank (only whitespace: {text!r})"
            raise InputError(
                f"input {number} of {len(inputs)} is {found}: expected a text to classify (or an "
                "image file). Remove it or give it some text; nothing was predicted."
            )


def token_counts(experiment, texts: list[str]) -> list[int]:
    """Each text's token count before truncation ([CLS] and [SEP] included)."""
    from tlx.data.text import token_lengths

    counts = token_lengths([{"text": t} for t in texts], experiment.model.tokenizer)
    return [int(n) for n in counts]


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

    predict = jax.jit(make_predict_fn(experiment.model.forward, experiment.task))
    probs = [np.asarray(predict(params, model_state, b))[b["weight"] > 0] for b in batches]
    return np.concatenate(probs)


def read_images(paths: list[str]) -> list:
    """uint8 HWC arrays (grayscale kept 2-d/1-channel; the pipeline makes it RGB).

    Raises InputError naming the first path that is not a readable image."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    images = []
    for path in paths:
        try:
            with Image.open(path) as img:
                images.append(np.asarray(img.convert("L" if img.mode in ("L", "1") else "RGB")))
        except FileNotFoundError:
            raise InputError(
                f"cannot read image {path!r}: no such file. This run classifies images: give "
                "image files (PNG, JPEG, ...)."
            ) from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise InputError(
                f"cannot read image {path!r}: {e}. Expected an image file that Pillow opens "
                "(PNG, JPEG, BMP, ...)."
            ) from None
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


def echo(text: str) -> str:
    """An input as shown after its labels: one line, at most ECHO_MAX_CHARS characters."""
    line = " ".join(text.split())
    if len(line) > ECHO_MAX_CHARS:
        return line[:ECHO_KEPT_CHARS] + "…"
    return line


def warn(message: str) -> None:
    print(f"{PROGRAM}: warning: {message}", file=sys.stderr, flush=True)


def main(argv):
    inputs = argv[1:]
    check_inputs(inputs)  # before anything is loaded
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    read_run_config(_WORKDIR.value)  # a wrong --workdir fails before JAX starts
    runtime.configure()
    experiment, params, model_state, step = _load_run(_WORKDIR.value, _STEP.value)
    is_image = experiment.model.preprocessing is not None
    if is_image:
        probs = predict_images(experiment, params, model_state, read_images(inputs))
        truncation = [{"truncated": False}] * len(inputs)
    else:
        max_length = int(experiment.config["data"]["max_length"])
        truncation = []
        for number, tokens in enumerate(token_counts(experiment, inputs), start=1):
            kept = min(tokens, max_length)
            truncation.append({"truncated": tokens > kept, "tokens": tokens, "tokens_kept": kept})
            if tokens > kept:
                warn(
                    f"text {number} ({echo(inputs[number - 1])[:30]!r}...) has {tokens:,} tokens, "
                    f"more than this model reads: truncated, kept the first {kept} of {tokens:,} "
                    "tokens ([CLS] and [SEP] included); the rest did not count."
                )
        probs = predict_texts(experiment, params, model_state, inputs)
    k = min(_TOP_K.value, len(experiment.label_names))
    rows = []
    for given, p, truncated in zip(inputs, probs, truncation):
        top = [
            {"label": experiment.label_names[i], "probability": float(p[i])}
            for i in p.argsort()[::-1][:k]
        ]
        rows.append({"file" if is_image else "text": given, "top_k": top, **truncated})
    if _JSON.value:
        document = {"workdir": str(_WORKDIR.value), "step": step}
        if not is_image:
            document["max_length"] = max_length
        document["predictions"] = rows
        print(json.dumps(document, ensure_ascii=False, indent=2))
        return
    for row, given in zip(rows, inputs):
        labels = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in row["top_k"])
        print(f"{labels}\t{echo(given)}")


if __name__ == "__main__":
    cli.run(main, program=PROGRAM)
