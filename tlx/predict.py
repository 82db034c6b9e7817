"""Predict with a trained run, or with a pretrained model as it was published.

    python -m tlx.predict --workdir=runs/rt "I love this product!" "A tedious mess."
    python -m tlx.predict --workdir=runs/fmnist --top_k=3 photo.jpg scan.png
    python -m tlx.predict --workdir=runs/rt --step=200 --json "I love this product!"
    python -m tlx.predict --model=torchvision:mobilenet_v2 --top_k=5 photo.jpg
    python -m tlx.predict --model=darknet:yolov3-tiny --save_images=annotated photo.jpg

Prints each input's prediction, then the input (a text longer than 80 characters is shown as its
first 60 and "…"); the run's task (tlx.tasks) decides what a prediction holds and how it reads. For
classification that is the most likely label and its probability (``--top_k`` for more). Text runs
take texts; image runs take image files, preprocessed exactly as the run's evaluation data.
``--step`` predicts with that checkpoint instead of the latest. ``--model`` runs a catalog image
model with its original head (ImageNet classes) and its own preprocessing, no training run needed.
A detector (``--model=darknet:yolov3-tiny``) prints each image's detections, "label score [x0, y0,
x1, y1]" in the image's pixels, best first, above ``--score_threshold`` (``--letterbox``:
darknet's input recipe instead of OpenCV's plain resize); ``--save_images=DIR``
also writes each image with its boxes drawn (DIR/<stem>.png); with ``--json`` a row is
``{"input": ..., "detections": [{"label", "class_id", "score", "box"}]}``.
``--json`` prints one JSON object per input instead, for scripts: ``"input"``, then the task's
fields (classification: ``"labels", "class_ids", "probabilities"``, top-k, best first), plus for a
run the checkpoint ``step`` and, for texts, ``truncated``, ``tokens`` and ``tokens_kept``.

Empty or blank texts are refused before the model is loaded. A text longer than the run's
``data.max_length`` tokens is truncated to them, as in training, with a warning on stderr saying
how many tokens were kept.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from absl import flags, logging

from tlx import cli, run_folder, runtime
from tlx.errors import CheckpointError, InputError

if TYPE_CHECKING:
    from tlx.tasks import Task  # imported late: tlx.tasks loads JAX, refusals come before it


def define_flags() -> None:
    """Defined only when run as a program, so that importing this module beside other
    programs (tests do, in one process) claims no flag name."""
    flags.DEFINE_string("workdir", None, "A folder written by tlx.train.")
    flags.DEFINE_string(
        "model",
        None,
        "Instead of --workdir: a pretrained catalog image model with its original head "
        "(tlx.zoo.names()), e.g. torchvision:mobilenet_v2.",
    )
    flags.DEFINE_integer("top_k", 1, "How many labels to print per input.", lower_bound=1)
    flags.DEFINE_integer(
        "step",
        None,
        "Predict with this checkpoint step (default: the selected one, the best on validation when "
        "the run selects, else the latest).",
        lower_bound=0,
    )
    flags.DEFINE_string(
        "save_images",
        None,
        "Detectors: also write each input with its boxes drawn, as <input stem>.png in this folder.",
    )
    flags.DEFINE_float(
        "score_threshold",
        0.25,
        "Detectors: report boxes whose score (objectness x class probability) is above this.",
        lower_bound=0.0,
        upper_bound=1.0,
    )
    flags.DEFINE_bool(
        "letterbox",
        False,
        "Pretrained detectors: darknet's letterbox (aspect kept, grey borders) instead of OpenCV's "
        "plain resize; a trained run always uses its own recipe.",
    )
    flags.DEFINE_bool(
        "json",
        False,
        "Print one JSON object per input (input, the task's fields, e.g. labels, class_ids, "
        "probabilities; for runs also step and, for texts, truncation).",
    )


PROGRAM = "tlx.predict"
ECHO_MAX_CHARS = 80  # an echoed input longer than this is shortened ...
ECHO_KEPT_CHARS = 60  # ... to its first this many characters and "…"


def load_run(workdir: str | Path, step: int | None = None):
    """(experiment without data, params, model_state) from a run's config.json and checkpoint
    `step` (default: the latest)."""
    experiment, params, model_state, _ = _load_run(workdir, step)
    return experiment, params, model_state


def read_run_spec(workdir: str | Path):
    """A run's spec as its config now stands (tlx.run_folder.read_config), or InputError saying
    what --workdir must be."""
    from tlx.spec import read_spec

    try:
        config = run_folder.read_config(workdir)
    except FileNotFoundError as e:
        raise InputError(f"--workdir={e}") from None
    except (OSError, ValueError) as e:
        raise InputError(
            f"{Path(workdir) / run_folder.CONFIG} is not readable JSON ({e}): expected the "
            "config.json that tlx.train wrote; the run folder is damaged."
        ) from None
    return read_spec(config)


def _load_run(workdir: str | Path, step: int | None):
    from tlx.checkpoint import Checkpoints
    from tlx.experiment import build_experiment
    from tlx.trainer import initial_params

    workdir = Path(workdir)
    # The run's own checkpoint replaces every parameter below: no init_from.
    spec = dataclasses.replace(read_run_spec(workdir), init_from="")
    experiment = build_experiment(spec, with_data=False)
    import jax

    params, model_state = initial_params(experiment, jax.random.key(0), log=lambda *_: None)
    # The selected step by default (the best on validation when the run selects, else the last).
    checkpoints = Checkpoints(run_folder.selected_checkpoints(workdir, step))
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
    """The task's per-input predictions (classification: probabilities [N, C]) for raw texts,
    through the run's own tokenisation."""
    from tlx.data.text import make_eval_batches

    data = experiment.spec.data
    batches = make_eval_batches(
        [{"text": t, "label": 0} for t in texts],
        experiment.model.tokenizer,
        batch_size=max(len(texts), 1),
        max_length=int(data.max_length),
        buckets=tuple(data.buckets),
    )
    return _predict_batches(experiment, params, model_state, batches)


def _predict_batches(experiment, params, model_state, batches):
    """The task's `predict` for the real rows (weight > 0) of evaluation-style batches,
    concatenated."""
    import jax
    import numpy as np

    from tlx.steps import make_predict_fn

    predict = jax.jit(make_predict_fn(experiment.model.forward, experiment.task))
    rows = [np.asarray(predict(params, model_state, b))[b["weight"] > 0] for b in batches]
    return np.concatenate(rows)


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
    """The task's per-input predictions (classification: probabilities [N, C]) for uint8 images,
    through the run's evaluation preprocessing."""

    from tlx.data.images import make_image_eval_batches

    batches = make_image_eval_batches(
        [{"image": img, "label": 0} for img in images],
        experiment.model.preprocessing,
        batch_size=max(len(images), 1),
    )
    return _predict_batches(experiment, params, model_state, batches)


def echo(text: str) -> str:
    """An input as shown after its prediction: one line, at most ECHO_MAX_CHARS characters."""
    line = " ".join(text.split())
    if len(line) > ECHO_MAX_CHARS:
        return line[:ECHO_KEPT_CHARS] + "…"
    return line


def warn(message: str) -> None:
    print(f"{PROGRAM}: warning: {message}", file=sys.stderr, flush=True)


def prediction_rows(
    task: Task, inputs: list[str], predicted, label_names, top_k: int
) -> list[dict]:
    """Per input: ``{"input": ..., **the task's fields}`` (Task.predictions)."""
    predictions = task.predictions(predicted, label_names, top_k)
    return [{"input": given, **fields} for given, fields in zip(inputs, predictions)]


def print_rows(format_prediction, rows: list[dict], as_json: bool) -> None:
    """``<format_prediction(row)><TAB>input`` per input (a task's format_prediction), or one JSON
    object per line."""
    for row in rows:
        if as_json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(f"{format_prediction(row)}\t{echo(row['input'])}")


def detect_with_pretrained(
    name: str, inputs: list[str], score_threshold: float, save_images, letterbox: bool = False
):
    """A catalog detector's detections, one row per input image; annotated PNGs in
    `save_images` when given. Returns the rows."""
    import tlx.zoo

    detector = tlx.zoo.load(name)
    if letterbox:
        detector.preprocessing = dataclasses.replace(detector.preprocessing, letterbox=True)
    images = read_images(inputs)
    found = detector.detect(images, score_threshold=score_threshold)
    rows = [{"input": given, "detections": d} for given, d in zip(inputs, found)]
    return _saved(images, rows, save_images)


def detect_with_run(workdir, step, inputs: list[str], score_threshold: float, save_images):
    """A trained detection run's detections (checkpoint `step`, default the selected one), one
    row per input image, with the step; annotated PNGs in `save_images` when given."""
    import jax
    import numpy as np

    from tlx.detection.inputs import prepare_batch
    from tlx.detection.report import image_detections

    experiment, params, model_state, step = _load_run(workdir, step)
    images = read_images(inputs)
    batch, transforms = prepare_batch(images, experiment.model.preprocessing)
    task, forward = experiment.task, experiment.model.forward

    @jax.jit
    def detect(params, model_state, image):
        outputs, _ = forward(params, model_state, {"image": image}, None, False)
        return task.detect(outputs, score_threshold, max_detections=100)

    found = jax.tree.map(np.asarray, detect(params, model_state, batch))
    rows = [
        {
            "input": given,
            "detections": image_detections(
                found, i, transforms[i], np.shape(images[i]), experiment.label_names
            ),
            "step": step,
        }
        for i, given in enumerate(inputs)
    ]
    return _saved(images, rows, save_images)


def _saved(images, rows: list[dict], save_images) -> list[dict]:
    if save_images:
        from tlx.detection.report import save_annotated

        for path in save_annotated(images, rows, save_images):
            print(f"{PROGRAM}: wrote {path}", file=sys.stderr)
    return rows


def predict_with_pretrained(name: str, inputs: list[str], top_k: int) -> tuple[Task, list[dict]]:
    """A catalog model with its original head (e.g. ImageNet classes), no training run: its task
    and one row per input."""
    import tlx.zoo
    from tlx.tasks import get_task

    model = tlx.zoo.load(name)
    if model.kind not in ("image", "detector") or not model.labels:
        raise InputError(
            f"--model={name} is not an image classifier with labelled classes, which "
            "--model predicts with; for a trained run use --workdir, and for text embeddings "
            "tlx.zoo.load(name).embed(...) in Python."
        )
    task = get_task("classification")  # what a catalog model's original head does
    predicted = task.predict_on_host(model(model.preprocess(read_images(inputs))))
    return task, prediction_rows(task, inputs, predicted, list(model.labels), top_k)


def predict_with_run(
    workdir: str, step: int | None, inputs: list[str], top_k: int
) -> tuple[Task, list[dict]]:
    """A trained run's task and predictions, one row per input (checkpoint `step`, default the
    latest)."""
    experiment, params, model_state, step = _load_run(workdir, step)
    task = experiment.task
    if experiment.model.preprocessing is not None:
        predicted = predict_images(experiment, params, model_state, read_images(inputs))
        rows = prediction_rows(task, inputs, predicted, experiment.label_names, top_k)
        return task, [{**row, "step": step} for row in rows]
    max_length = int(experiment.spec.data.max_length)
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
    predicted = predict_texts(experiment, params, model_state, inputs)
    rows = prediction_rows(task, inputs, predicted, experiment.label_names, top_k)
    return task, [{**row, "step": step, **t} for row, t in zip(rows, truncation)]


def main(argv):
    inputs = argv[1:]
    if (flags.FLAGS.workdir is None) == (flags.FLAGS.model is None):
        raise InputError(
            "give either --workdir (a run trained by tlx.train) or --model (a pretrained "
            "catalog model, e.g. --model=torchvision:mobilenet_v2), not both and not neither."
        )
    check_inputs(inputs)  # before anything is loaded
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    run_task = None
    if flags.FLAGS.workdir is not None:
        run_task = read_run_spec(flags.FLAGS.workdir).task  # a wrong --workdir fails before JAX
    runtime.configure()
    if run_task == "detection" or (
        flags.FLAGS.model is not None and is_detector(flags.FLAGS.model)
    ):
        from tlx.detection.report import format_detections

        if run_task == "detection":
            rows = detect_with_run(
                flags.FLAGS.workdir,
                flags.FLAGS.step,
                inputs,
                flags.FLAGS.score_threshold,
                flags.FLAGS.save_images,
            )
        else:
            rows = detect_with_pretrained(
                flags.FLAGS.model,
                inputs,
                flags.FLAGS.score_threshold,
                flags.FLAGS.save_images,
                flags.FLAGS.letterbox,
            )
        print_rows(format_detections, rows, flags.FLAGS.json)
        return
    if flags.FLAGS.save_images:
        raise InputError(
            "--save_images draws detections: it is for detectors (--model=darknet:... or a "
            "detection run's --workdir)."
        )
    if flags.FLAGS.model is not None:
        task, rows = predict_with_pretrained(flags.FLAGS.model, inputs, flags.FLAGS.top_k)
    else:
        task, rows = predict_with_run(
            flags.FLAGS.workdir, flags.FLAGS.step, inputs, flags.FLAGS.top_k
        )
    print_rows(task.format_prediction, rows, flags.FLAGS.json)


def is_detector(name: str) -> bool:
    """Whether a --model name is a catalog detector (read from the catalog, nothing loaded)."""
    from tlx.zoo.catalog import CATALOG

    return name in CATALOG and CATALOG[name].is_detector


if __name__ == "__main__":
    define_flags()
    cli.run(main, program=PROGRAM)
