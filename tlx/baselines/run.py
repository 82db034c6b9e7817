"""One baseline run: the same data as the neural arm, C chosen on validation, the run folder.

:func:`run_baseline` reads the config's dataset through the sources the neural pipelines read
(``tlx.data.sources.load_text_source``, ``tlx.data.image_sources.load_image_source``), takes the
labelled subset they take (:func:`train_indices`), fits the features on it, fits one logistic
regression per C of ``model.kwargs.c_grid`` (each from zero, as ``LogisticRegression(C=c)``),
keeps the one with the highest accuracy on ``data.eval_split`` (ties: the lower loss, then the
smaller C) and reports every ``data.eval_splits`` at that C. Loss is the mean cross-entropy in
nats, as the neural runs report it. The run folder:

    config.json, history.jsonl   as any run (tlx.run_folder.record_start)
    metrics.jsonl   one ``select_<eval_split>`` record per C (step 0: accuracy, loss, examples,
                    C, iterations, converged, fit_seconds), the chosen C's ``<eval_split>`` record
                    at the last step (with elapsed_seconds, as the trainer's evaluations), and
                    ``final_<split>`` for each evaluation split
    summary.json    the trainer's schema (plan "classical"; steps: config.total_steps, so that
                    a sweep reads the cell as finished), plus ``selected``: the chosen C and why

A run whose summary.json is there is finished: running it again in the same workdir (with a
config a resume may use) returns that summary and writes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlx import run_folder
from tlx.baselines.estimators import check_baseline
from tlx.config_checks import check_label_count
from tlx.errors import ConfigError
from tlx.machine import machine
from tlx.metrics import process_max_rss_bytes
from tlx.spec import RunSpec

PLAN = "classical"  # summary.json's "plan" for every baseline
# tlx.experiment draws a text run's subset with text.cacheable_examples' default subset_seed,
# the same for every run seed (seeds then differ only in training order); an image run's with
# its own seed (images.make_image_train_batches). tests/test_baselines.py holds both to it.
TEXT_SUBSET_SEED = 0
SELECTION_RULE = "highest accuracy on the selection split; ties: lower loss, then smaller C"


@dataclasses.dataclass
class Split:
    inputs: Any  # texts (list of str) or uint8 images [N, H, W, C]
    labels: np.ndarray  # int [N]


@dataclasses.dataclass
class Candidate:
    """One C of the grid, fitted and scored on the selection split."""

    c: float
    model: Any
    result: dict  # accuracy, loss, examples
    iterations: int
    converged: bool
    fit_seconds: float

    def record(self, split: str) -> dict:
        return {
            "step": 0,
            "split": f"select_{split}",
            **self.result,
            "C": self.c,
            "iterations": self.iterations,
            "converged": self.converged,
            "fit_seconds": round(self.fit_seconds, 3),
        }


def run_baseline(spec: RunSpec, workdir: str | Path, *, log=print) -> dict:
    """Fit and evaluate the baseline the config names, writing its run folder; a finished run
    returns its summary. ConfigError before anything is read when the config cannot work."""
    called = time.perf_counter()
    baseline, options = check_baseline(spec)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    changes = run_folder.check_resume(workdir, spec.config)  # refuses before any write
    if changes is not None and run_folder.is_finished(workdir, spec.total_steps):
        log(f"{workdir} holds this baseline, finished: nothing to do.")
        return run_folder.read_summary(workdir)

    train, evaluations, num_classes = load_data(spec, baseline.data_kind)
    run_folder.record_start(workdir, spec.config, changes, 0)
    select_split = spec.data.eval_split
    log(f"{baseline.name}: choosing C on {select_split} from {list(options['c_grid'])}")
    started = time.perf_counter()
    search = Search.run(
        baseline.features(options), options, train, evaluations[select_split], num_classes,
        seed=spec.seed, log=log,
    )  # fmt: skip
    train_seconds = time.perf_counter() - started
    elapsed = time.perf_counter() - called
    best = search.best
    log(f"chosen C={best.c:g} ({SELECTION_RULE})")
    results = {
        split: best.result if split == select_split else search.score(evaluations[split])
        for split in spec.data.eval_splits
    }

    end = spec.total_steps
    records = [candidate.record(select_split) for candidate in search.candidates]
    # the chosen model's evaluation as the trainer writes one (learning curves, time to accuracy)
    records.append({"step": end, "split": select_split, **best.result, "C": best.c,
                    "elapsed_seconds": round(elapsed, 3)})  # fmt: skip
    records += [{"step": end, "split": f"final_{s}", **r} for s, r in results.items()]
    lines = "".join(json.dumps(record) + "\n" for record in records)
    run_folder.write_atomic(workdir / run_folder.METRICS, lines)
    summary = {
        "plan": PLAN,
        "model": f"{baseline.describe(options)} ({search.num_features:,} features)",
        # The config's steps, not lbfgs iterations (those are in "selected"): a sweep counts a
        # cell finished when its summary's steps equal its total_steps.
        "steps": end,
        "resumed_from_step": 0,
        "train_examples": len(train.labels),  # distinct labelled examples fitted on
        # Features, every fit of the grid and its selection-split scores; not the data loading.
        "train_seconds_this_run": round(train_seconds, 2),
        "examples_per_sec": round(len(train.labels) / max(train_seconds, 1e-9), 2),
        "peak_memory_bytes": process_max_rss_bytes(),
        "machine": machine(),  # seconds compare only within one machine
        "selected": {
            "C": best.c,
            "split": select_split,
            "rule": SELECTION_RULE,
            **{k: best.result[k] for k in ("accuracy", "loss")},
            "iterations": best.iterations,
            "converged": best.converged,
            "c_grid": list(options["c_grid"]),
        },
        "results": results,
    }
    run_folder.write_atomic(workdir / run_folder.SUMMARY, json.dumps(summary, indent=1))
    return summary


@dataclasses.dataclass
class Search:
    """The features fitted on the training subset, and a logistic regression per C."""

    features: Any  # fitted scikit-learn transformer
    num_features: int
    num_classes: int
    candidates: list[Candidate]

    @classmethod
    def run(cls, features, options, train: Split, select: Split, num_classes: int, *, seed, log):
        """Fit the features on `train`, then one model per C, each from zero. (Warm starts
        along the grid save ~40% but stop at once where the previous C's solution already meets
        lbfgs's tolerance: on Rotten Tomatoes C=10 then returned C=3's model unchanged.)"""
        from sklearn.linear_model import LogisticRegression

        x_train = features.fit_transform(train.inputs)
        x_select = features.transform(select.inputs)
        candidates = []
        for c in options["c_grid"]:
            model = LogisticRegression(C=c, max_iter=options["max_iter"], random_state=seed)
            candidate = fit_one(model, x_train, train.labels, x_select, select.labels, num_classes)
            result = candidate.result
            log(
                f"C={c:g}: accuracy {result['accuracy']:.4f} loss {result['loss']:.4f} "
                f"({candidate.iterations} iterations"
                f"{'' if candidate.converged else ', not converged'}, "
                f"{candidate.fit_seconds:.1f} s)"
            )
            candidates.append(candidate)
        return cls(features, x_train.shape[1], num_classes, candidates)

    @property
    def best(self) -> Candidate:
        return choose(self.candidates)

    def score(self, split: Split) -> dict:
        """The chosen model on another split."""
        x = self.features.transform(split.inputs)
        return score(self.best.model, x, split.labels, self.num_classes)


def fit_one(model, x_train, y_train, x_select, y_select, num_classes: int) -> Candidate:
    """`model` fitted and scored on the selection split."""
    from sklearn.exceptions import ConvergenceWarning

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x_train, y_train)
    seconds = time.perf_counter() - start
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    result = score(model, x_select, y_select, num_classes)
    return Candidate(model.C, model, result, int(np.max(model.n_iter_)), converged, seconds)


def choose(candidates: Sequence[Candidate]) -> Candidate:
    """The grid point SELECTION_RULE picks."""
    return max(candidates, key=lambda k: (k.result["accuracy"], -k.result["loss"], -k.c))


def log_probabilities(model, x, num_classes: int) -> np.ndarray:
    """float64 [N, num_classes] log-softmax of the model's scores; -inf for a class it never saw.

    From decision_function rather than predict_log_proba, which takes the log of rounded
    probabilities and gives -inf (an infinite loss) for a confident mistake.
    """
    scores = np.asarray(model.decision_function(x), np.float64)
    if scores.ndim == 1:  # binary: the score of classes_[1] against classes_[0]
        scores = np.stack([np.zeros_like(scores), scores], axis=1)
    scores = scores - scores.max(axis=1, keepdims=True)
    full = np.full((len(scores), num_classes), -np.inf)
    full[:, model.classes_] = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return full


def score(model, x, labels: np.ndarray, num_classes: int) -> dict:
    """accuracy, loss (mean cross-entropy, nats) and examples, as the neural runs report them."""
    log_p = log_probabilities(model, x, num_classes)
    labels = np.asarray(labels)
    return {
        "accuracy": float(np.mean(log_p.argmax(axis=1) == labels)),
        "loss": float(-np.mean(log_p[np.arange(len(labels)), labels])),
        "examples": len(labels),
    }


def train_indices(source, spec: RunSpec, kind: str) -> np.ndarray:
    """Positions in the train split of the examples the neural arm of `spec` trains on: all of
    them, or for data.train_examples=N the seeded subset tlx.experiment's pipelines draw."""
    from tlx.data import images, text

    wanted = int(spec.data.train_examples)
    if not wanted:
        return np.arange(len(source))
    try:
        if kind == "text":
            return text.Subset(source, wanted, TEXT_SUBSET_SEED).indices
        return images.Subset(source, wanted, spec.seed).indices  # class-stratified
    except ValueError as e:
        raise ConfigError(
            f"data.train_examples={wanted}: {e} Use at most {len(source)}, or 0 for all."
        ) from e


def load_data(spec: RunSpec, kind: str) -> tuple[Split, dict[str, Split], int]:
    """(the training subset, {split: its examples} for the selection and evaluation splits
    (data.eval_examples: the first N of each), the number of classes)."""
    from tlx.data import image_sources, sources

    data = spec.data
    if kind == "text":
        read, names = sources.load_text_source, sources.label_names(data.name, data.data_dir)
    else:
        read = image_sources.load_image_source
        names = image_sources.image_label_names(data.name, data.data_dir)
    check_label_count(names, data.name)

    def examples(split: str, indices=None) -> Split:
        try:
            source = read(data.name, split, data.data_dir)
        except KeyError as e:  # a split the dataset lacks
            raise ConfigError(f"config.data: {e.args[0]}") from e
        if indices is None:
            stop = data.eval_examples or len(source)
            indices = np.arange(min(stop, len(source)))
        elif callable(indices):
            indices = indices(source)
        if kind == "text":
            return Split([source.texts[i] for i in indices], source.labels[indices])
        if not hasattr(source, "images"):
            raise ConfigError(
                f"model.name='pixel_logreg' needs images of one size, but data.name="
                f"{data.name!r} has images of varying sizes ({source!r}). Use a fixed-size "
                "dataset (fashion_mnist, cifar10)."
            )
        return Split(source.images[indices], source.labels[indices])

    train = examples("train", lambda source: train_indices(source, spec, kind))
    missing = sorted(set(range(len(names))) - set(np.unique(train.labels).tolist()))
    if missing:
        raise ConfigError(
            f"data.train_examples={data.train_examples} drew no example of classes "
            f"{[names[i] for i in missing]}, which a logistic regression then cannot predict "
            "(an infinite loss on each of their examples). Use more training examples."
        )
    wanted = dict.fromkeys([data.eval_split, *data.eval_splits])
    return train, {split: examples(split) for split in wanted}, len(names)
