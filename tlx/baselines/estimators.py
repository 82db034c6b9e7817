"""The classical baselines: which data each takes, its settings (``model.kwargs``) and defaults,
and its scikit-learn features. Everything here is checked from the config alone, before any
dataset is read or anything is fitted."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tlx.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Baseline:
    name: str  # model.name
    data_kind: str  # "text" | "image"
    defaults: Mapping[str, Any]  # model.kwargs: each key's value when the config omits it
    describe: Callable[[Mapping], str]  # options -> summary.json's "model"
    features: Callable[[Mapping], Any]  # options -> an unfitted scikit-learn transformer


def _tfidf_features(options: Mapping):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    def tfidf(analyzer: str, ngrams) -> TfidfVectorizer:
        # sublinear tf (1 + log tf): a word repeated in a snippet is not 3x the evidence
        return TfidfVectorizer(
            analyzer=analyzer,
            ngram_range=tuple(ngrams),
            sublinear_tf=True,
            min_df=options["min_df"],
        )

    return FeatureUnion(
        [
            ("word", tfidf("word", options["word_ngrams"])),
            # char_wb: character n-grams inside word boundaries (misspellings, word pieces)
            ("char_wb", tfidf("char_wb", options["char_ngrams"])),
        ]
    )


def _describe_tfidf(options: Mapping) -> str:
    (w0, w1), (c0, c1) = options["word_ngrams"], options["char_ngrams"]
    return (
        f"tfidf_logreg: TF-IDF of word {w0}-{w1}-grams + char_wb {c0}-{c1}-grams -> logistic "
        "regression"
    )


def scaled_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, H*W*C] in [0, 1]."""
    return np.asarray(images).reshape(len(images), -1).astype(np.float32) / 255.0


def _pixel_features(options: Mapping):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    # Standardised with the training subset's statistics: lbfgs converges in far fewer
    # iterations on unit-variance features, and one C then weighs every pixel alike.
    return make_pipeline(FunctionTransformer(scaled_pixels), StandardScaler())


def _describe_pixels(options: Mapping) -> str:
    return "pixel_logreg: raw pixels in [0, 1], standardised -> logistic regression"


_SOLVER = {"max_iter": 1000}  # lbfgs iterations per fit (summary.json says if one stopped there)
BASELINES: Mapping[str, Baseline] = {
    "tfidf_logreg": Baseline(
        "tfidf_logreg",
        "text",
        # C is scikit-learn's inverse L2 strength on the summed loss
        {
            "c_grid": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
            "word_ngrams": (1, 2),
            "char_ngrams": (2, 5),
            "min_df": 1,
            **_SOLVER,
        },
        _describe_tfidf,
        _tfidf_features,
    ),
    "pixel_logreg": Baseline(
        "pixel_logreg",
        "image",
        {"c_grid": (1e-4, 1e-3, 1e-2, 1e-1, 1.0), **_SOLVER},
        _describe_pixels,
        _pixel_features,
    ),
}


def is_baseline(spec) -> bool:
    """The run `spec` (a tlx.spec.RunSpec) is a classical baseline, not a network."""
    return spec.model.name in BASELINES


def default_kwargs(name: str) -> dict:
    """The `model.kwargs` baseline `name` uses when a config leaves them out."""
    return dict(BASELINES[name].defaults)


def data_kind(name: str) -> str:
    """ "text" or "image" for a data.name tlx knows; ConfigError naming both lists otherwise."""
    from tlx.data import image_sources, sources

    if name in sources.TEXT_DATASETS:
        return "text"
    if image_sources.is_image_dataset(name):
        return "image"
    raise ConfigError(
        f"data.name={name!r} is neither a text dataset {sorted(sources.TEXT_DATASETS)} nor an "
        f"image dataset {sorted(image_sources.IMAGE_DATASETS)} (or "
        f"'{image_sources.FOLDER_PREFIX}<path>'). Check the spelling in the config."
    )


def check_baseline(spec) -> tuple[Baseline, dict]:
    """(the baseline, its settings: defaults overridden by model.kwargs, checked) of the run
    `spec`; raises ConfigError, every problem at once, before anything is read or fitted."""
    if not is_baseline(spec):
        raise ConfigError(
            f"model.name={spec.model.name!r} is not a classical baseline; those are "
            f"{sorted(BASELINES)}."
        )
    baseline = BASELINES[spec.model.name]
    kind = data_kind(spec.data.name)
    if kind != baseline.data_kind:
        other = next(b.name for b in BASELINES.values() if b.data_kind == kind)
        raise ConfigError(
            f"model.name={baseline.name!r} is a baseline for {baseline.data_kind} datasets, but "
            f"data.name={spec.data.name!r} holds {kind}s. Use model.name={other!r} for {kind}s, "
            f"or a {baseline.data_kind} dataset."
        )
    return baseline, _options(baseline, spec.model.kwargs)


def _options(baseline: Baseline, kwargs: Mapping) -> dict:
    problems = []
    unknown = sorted(str(k) for k in kwargs if k not in baseline.defaults)
    if unknown:
        problems.append(f"unknown keys {unknown}")
    options = dict(baseline.defaults)
    for key in baseline.defaults:
        if key in kwargs:
            value, problem = _CHECKS[key](kwargs[key])
            if problem:
                problems.append(f"model.kwargs.{key}={kwargs[key]!r}: expected {problem}")
            options[key] = value
    if problems:
        known = ", ".join(f"{k}={v!r}" for k, v in baseline.defaults.items())
        raise ConfigError(
            f"model.name={baseline.name!r} cannot run with these model.kwargs:\n  "
            + "\n  ".join(problems)
            + f"\nIts kwargs, with their defaults: {known}."
        )
    return options


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _c_grid(value) -> tuple[tuple, str]:
    what = "a non-empty list of finite numbers > 0 (the C values tried), e.g. (0.1, 1.0, 10.0)"
    if isinstance(value, str) or not hasattr(value, "__len__") or not len(value):
        return value, what
    for c in value:
        if not isinstance(c, numbers.Real) or isinstance(c, bool):
            return value, what
        if not (math.isfinite(c) and c > 0):
            return value, what
    return tuple(sorted({float(c) for c in value})), ""


def _ngrams(value) -> tuple[tuple, str]:
    what = "(low, high): whole numbers with 1 <= low <= high, e.g. (1, 2)"
    if isinstance(value, str) or not hasattr(value, "__len__") or len(value) != 2:
        return value, what
    low, high = value
    if not (_is_int(low) and _is_int(high) and 1 <= low <= high):
        return value, what
    return (int(low), int(high)), ""


def _positive_int(value) -> tuple[int, str]:
    if not _is_int(value) or value < 1:
        return value, "a whole number >= 1"
    return int(value), ""


_CHECKS = {
    "c_grid": _c_grid,
    "word_ngrams": _ngrams,
    "char_ngrams": _ngrams,
    "min_df": _positive_int,
    "max_iter": _positive_int,
}
