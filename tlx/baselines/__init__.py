"""Classical baselines as tlx runs: what a transfer-learning result must beat.

    python -m tlx.train --config=configs/minilm_rt_tfidf.py --workdir=runs/tfidf_rt
    python -m tlx.train --config=configs/mnv2_fmnist_pixel_logreg.py --workdir=runs/pixels

A config whose ``model.name`` is one of :data:`BASELINES` is a classical baseline: scikit-learn
features and a logistic regression instead of a network. It reads the same config sections, the
same dataset splits (``tlx.data``) and the same labelled subset for ``data.train_examples=N`` and
seed as the neural arm of that config, and writes the same run folder (config.json,
metrics.jsonl, summary.json), so sweeps and aggregation treat it as one more strategy.

- ``tfidf_logreg`` (text): TF-IDF of word 1-2-grams and char_wb 2-5-grams, sublinear tf.
- ``pixel_logreg`` (fixed-size images): raw pixels scaled to [0, 1], standardised.

The regularisation C is chosen from ``model.kwargs.c_grid`` on ``data.eval_split`` (validation):
that is model selection, so every grid point is recorded in metrics.jsonl and the choice in
summary.json's ``selected``. The fields the neural runs need (batch_size, plan, optim, the
step cadence) must still be present, as in any config, but a baseline does not read them.
"""

from __future__ import annotations

from tlx.baselines.estimators import BASELINES, check_baseline, default_kwargs, is_baseline


def run_baseline(spec, workdir, *, log=print) -> dict:
    """Fit, select and evaluate the baseline `spec` names; returns its summary (see
    :func:`tlx.baselines.run.run_baseline`)."""
    # Imported on use: scikit-learn and the datasets load only when a baseline runs.
    from tlx.baselines import run

    return run.run_baseline(spec, workdir, log=log)


__all__ = ["BASELINES", "check_baseline", "default_kwargs", "is_baseline", "run_baseline"]
