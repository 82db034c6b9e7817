"""Predict with a trained run, or with a pretrained model as it was published.

    python -m tlx.predict --workdir=runs/rt "I love this product!" "A tedious mess."
    python -m tlx.predict --workdir=runs/fmnist --top_k=3 photo.jpg scan.png
    python -m tlx.predict --workdir=runs/rt --step=200 --json "I love this product!"
    python -m tlx.predict --model=torchvision:mobilenet_v2 --top_k=5 photo.jpg

Prints each input's most likely label and its probability (``--top_k`` for more), then the input
(a text longer than 80 characters is shown as its first 60 and "…"). Text runs take texts; image
runs take image files, preprocessed exactly as the run's evaluation data. ``--step`` predicts with
that checkpoint instead of the latest. ``--model`` runs a catalog image model with its original
head (ImageNet classes) and its own preprocessing, no training run needed. ``--json`` prints one
JSON object per input instead, for scripts: ``{"input", "labels", "class_ids", "probabilities"}``
(top-k, best first), plus for a run the checkpoint ``step`` and, for texts, ``truncated``,
``tokens`` and ``tokens_kept``.

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
_MODEL = flags.DEFINE_string(
    "model",
    None,
    "Instead of --workdir: a pretrained catalog image model with its original head "
    "(tlx.zoo.names()), e.g. torchvision:mobilenet_v2.",
)
_TOP_K = flags.DEFINE_integer("top_k", 1, "How many labels to print per input.", lower_bound=1)
_STEP = flags.DEFINE_integer(
    "step", None, "Predict with this checkpoint step (default: the latest).", lower_bound=0
)
_JSON = flags.DEFINE_bool(
    "json",
    False,
    "Print one JSON object per input (input, labels, class_ids, probabilities; for runs also "
    "step and, for texts, truncation).",
)

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


def top_k_rows(inputs: list[str], probs, label_names, k: int) -> list[dict]:
    """Per input: its top-k labels, class ids and probabilities, most likely first."""
    rows = []
    for given, p in zip(inputs, probs):
        best = [int(i) for i in p.argsort()[::-1][: min(k, len(label_names))]]
        rows.append(
            {
                "input": given,
                "labels": [label_names[i] for i in best],
                "class_ids": best,
                "probabilities": [float(p[i]) for i in best],
            }
        )
    return rows


def print_rows(rows: list[dict], as_json: bool) -> None:
    """``label probability, ...<TAB>input`` per input, or one JSON object per line."""
    for row in rows:
        if as_json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            labels = ", ".join(f"{n} {p:.3f}" for n, p in zip(row["labels"], row["probabilities"]))
            print(f"{labels}\t{echo(row['input'])}")


def predict_with_pretrained(name: str, inputs: list[str]) -> list[dict]:
    """A catalog model with its original head (e.g. ImageNet classes), no training run."""
    import numpy as np

    import tlx.zoo

    model = tlx.zoo.load(name)
    if model.kind != "image" or not model.labels:
        raise InputError(
            f"--model={name} is not an image classifier with labelled classes, which "
            "--model predicts with; for a trained run use --workdir, and for text embeddings "
            "tlx.zoo.load(name).embed(...) in Python."
        )
    logits = np.asarray(model(model.preprocess(read_images(inputs))), np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return top_k_rows(inputs, probs, list(model.labels), _TOP_K.value)


def predict_with_run(workdir: str, step: int | None, inputs: list[str]) -> list[dict]:
    """A trained run's predictions (checkpoint `step`, default the latest)."""
    experiment, params, model_state, step = _load_run(workdir, step)
    if experiment.model.preprocessing is not None:
        probs = predict_images(experiment, params, model_state, read_images(inputs))
        rows = top_k_rows(inputs, probs, experiment.label_names, _TOP_K.value)
        return [{**row, "step": step} for row in rows]
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
    rows = top_k_rows(inputs, probs, experiment.label_names, _TOP_K.value)
    return [{**row, "step": step, **t} for row, t in zip(rows, truncation)]


def main(argv):
    inputs = argv[1:]
    if (_WORKDIR.value is None) == (_MODEL.value is None):
        raise InputError(
            "give either --workdir (a run trained by tlx.train) or --model (a pretrained "
            "catalog model, e.g. --model=torchvision:mobilenet_v2), not both and not neither."
        )
    check_inputs(inputs)  # before anything is loaded
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if _WORKDIR.value is not None:
        read_run_config(_WORKDIR.value)  # a wrong --workdir fails before JAX starts
    runtime.configure()
    if _MODEL.value is not None:
        rows = predict_with_pretrained(_MODEL.value, inputs)
    else:
        rows = predict_with_run(_WORKDIR.value, _STEP.value, inputs)
    print_rows(rows, _JSON.value)


if __name__ == "__main__":
    cli.run(main, program=PROGRAM)
