"""Classical baselines (tlx.baselines) on real data: the same labelled subset as the neural
pipelines, C chosen on validation and recorded, a run folder that sweeps and aggregation read,
reruns that do nothing, and configs refused before anything is read."""

import functools
import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

from configs import minilm_rt_tfidf, mnv2_fmnist_pixel_logreg
from tests.conftest import REPO
from tlx import experiment, run_folder
from tlx.baselines import check_baseline, run_baseline
from tlx.baselines import run as baseline_run
from tlx.data import fashion_mnist, image_sources, images, sources
from tlx.data.sampling import Shard
from tlx.errors import ConfigError
from tlx.spec import read_spec

TEXT_GRID = (0.3, 3.0, 30.0)
SUMMARY_KEYS = {
    "plan", "model", "steps", "resumed_from_step", "train_examples", "train_seconds_this_run",
    "examples_per_sec", "peak_memory_bytes", "machine", "selected", "results",
}  # fmt: skip


def with_values(config, **values):
    """`config` with `values` at dotted keys spelt with '__' (model__kwargs = model.kwargs)."""
    for key, value in values.items():
        *parents, leaf = key.split("__")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


@pytest.fixture(scope="module")
def tfidf_run(rt_data_dir, tmp_path_factory):
    """`python -m tlx.train` on configs/minilm_rt_tfidf.py with 2,000 real labels, 3 values of C."""
    workdir = tmp_path_factory.mktemp("tfidf") / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
    flags = {
        "data.data_dir": rt_data_dir,
        "data.train_examples": 2000,
        "model.kwargs.c_grid": repr(TEXT_GRID),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tlx.train", "--config=configs/minilm_rt_tfidf.py",
         f"--workdir={workdir}", *(f"--config.{k}={v}" for k, v in flags.items())],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir, done.stdout


def test_tlx_train_runs_the_tfidf_config_into_a_run_folder(tfidf_run):
    workdir, stdout = tfidf_run
    summary = run_folder.read_summary(workdir)
    assert set(summary) == SUMMARY_KEYS
    assert summary["plan"] == "classical" and summary["model"].startswith("tfidf_logreg")
    assert summary["train_examples"] == 2000 and summary["resumed_from_step"] == 0
    assert run_folder.is_finished(workdir)  # steps echo total_steps: a sweep skips the cell
    config = run_folder.read_config(workdir)
    assert config["model"]["name"] == "tfidf_logreg"
    assert set(summary["results"]) == set(config["data"]["eval_splits"]) == {"validation", "test"}
    assert "Results: classical" in stdout and "│ test " in stdout  # the result table


def test_c_is_the_validation_argmax_of_the_grid_and_text_beats_chance(tfidf_run):
    workdir, _ = tfidf_run
    summary, records = run_folder.read_summary(workdir), run_folder.read_metrics(workdir)
    grid = [r for r in records if r["split"] == "select_validation"]
    assert [r["C"] for r in grid] == list(TEXT_GRID)  # every grid point recorded
    best = max(grid, key=lambda r: (r["accuracy"], -r["loss"]))
    selected = summary["selected"]
    assert selected["C"] == best["C"] and selected["c_grid"] == list(TEXT_GRID)
    assert summary["results"]["validation"]["accuracy"] == best["accuracy"]
    assert summary["results"]["validation"]["loss"] == best["loss"]
    # the chosen C's evaluation, as the trainer writes one (learning curves, time to accuracy)
    (chosen,) = [r for r in records if r["split"] == "validation"]
    assert chosen["C"] == best["C"] and chosen["step"] == summary["steps"]
    test = summary["results"]["test"]
    assert test["examples"] == 1236 and test["accuracy"] > 0.64  # chance: 0.5
    assert 0.3 < test["loss"] < np.log(2)  # nats, below the uniform guess's ln 2


def test_rerun_in_the_same_workdir_returns_the_summary_and_writes_nothing(tfidf_run, monkeypatch):
    workdir, _ = tfidf_run
    before = {p.name: p.read_bytes() for p in workdir.iterdir()}

    def refit(*args, **kwargs):
        raise AssertionError("a finished baseline read its data again")

    monkeypatch.setattr(baseline_run, "load_data", refit)
    spec = read_spec(run_folder.read_config(workdir))
    assert run_baseline(spec, workdir, log=lambda line: None) == run_folder.read_summary(workdir)
    assert {p.name: p.read_bytes() for p in workdir.iterdir()} == before


def test_text_subset_is_the_one_the_neural_pipeline_trains_on(rt_data_dir):
    """tlx.experiment's own text data assembly, with a word-level stand-in tokenizer."""
    import tokenizers

    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    bundle = types.SimpleNamespace(tokenizer=tokenizer, checkpoint_dir="")
    source = sources.load_text_source("rotten_tomatoes", "train", rt_data_dir)
    for seed in (0, 3):
        config = with_values(
            minilm_rt_tfidf.get_config(), seed=seed, data__data_dir=rt_data_dir,
            data__train_examples=300,
        )  # fmt: skip
        spec = read_spec(config)
        neural = experiment._text_data(spec, bundle, Shard())[2].make_batch.source
        indices = baseline_run.train_indices(source, spec, "text")
        np.testing.assert_array_equal(indices, neural.indices)
        train, _, _ = baseline_run.load_data(spec, "text")
        assert train.inputs == [neural[i]["text"] for i in range(300)]
        np.testing.assert_array_equal(train.labels, [neural[i]["label"] for i in range(300)])


def test_pixel_baseline_on_fashion_mnist_uses_each_seeds_image_subset(
    image_data_dir, tmp_path, monkeypatch
):
    try:
        fashion_mnist.find_dir()
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST files absent (apt-get install dataset-fashion-mnist): {e}")
    # each split decoded once (70,000 PNGs), here and in the run
    monkeypatch.setattr(
        image_sources, "load_image_source", functools.cache(image_sources.load_image_source)
    )
    source = image_sources.load_image_source("fashion_mnist", "train", image_data_dir)
    subsets = []
    for seed in (0, 1):
        config = with_values(
            mnv2_fmnist_pixel_logreg.get_config(), seed=seed, data__data_dir=image_data_dir,
            data__train_examples=200,
        )  # fmt: skip
        spec = read_spec(config)
        # the subset tlx.experiment's image pipelines draw (make_image_train_batches and the
        # feature cache's image_cacheable_examples both take it from _training_source)
        neural = images._training_source(source, spec.batch_size, seed, 200, None)
        subsets.append(baseline_run.train_indices(source, spec, "image"))
        np.testing.assert_array_equal(subsets[-1], neural.indices)
    assert not np.array_equal(*subsets)  # each seed its own labels, as the neural arms
    config.data.eval_examples = 500
    config.model.kwargs.c_grid = (0.01, 0.1)
    summary = run_baseline(read_spec(config), tmp_path, log=lambda line: None)
    assert summary["train_examples"] == 200 and summary["selected"]["C"] in (0.01, 0.1)
    for split in ("validation", "test"):
        assert summary["results"][split]["examples"] == 500
        assert summary["results"][split]["accuracy"] > 0.5  # 10 classes: chance 0.1


@pytest.mark.parametrize(
    "module, values, message",
    [
        (minilm_rt_tfidf, {"data__name": "fashion_mnist"}, "baseline for text datasets"),
        (mnv2_fmnist_pixel_logreg, {"data__name": "rotten_tomatoes"}, "for image datasets"),
        (minilm_rt_tfidf, {"data__name": "no_such_data"}, "neither a text dataset"),
        (mnv2_fmnist_pixel_logreg, {"model__kwargs__max_iter": 0}, "max_iter=0: expected"),
        (minilm_rt_tfidf, {"model__kwargs__c_grid": ()}, "c_grid=(): expected"),
        (minilm_rt_tfidf, {"model__kwargs__char_ngrams": (5, 2)}, "char_ngrams=(5, 2)"),
    ],
)
def test_configs_that_cannot_work_are_refused_before_anything_is_read(
    module, values, message, tmp_path, monkeypatch
):
    def read(*args, **kwargs):
        raise AssertionError("data was read before the config was checked")

    monkeypatch.setattr(baseline_run, "load_data", read)
    config = with_values(module.get_config(), **values)
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_baseline(read_spec(config), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_unknown_kwargs_are_named_with_the_known_ones():
    config = minilm_rt_tfidf.get_config().to_dict()
    config["model"]["kwargs"]["ngrams"] = (1, 3)
    with pytest.raises(ConfigError, match=r"(?s)unknown keys \['ngrams'\].*word_ngrams=\(1, 2\)"):
        check_baseline(read_spec(config))


def test_loss_is_the_mean_cross_entropy_in_nats_and_finite_for_confident_mistakes():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    for classes in (2, 3):
        x = rng.normal(size=(200, 5))
        y = (x[:, 0] > 0).astype(int) + (classes == 3) * (x[:, 1] > 1)
        model = LogisticRegression().fit(x, y)
        result = baseline_run.score(model, x, y, classes)
        assert result["accuracy"] == pytest.approx(model.score(x, y))
        assert result["loss"] == pytest.approx(log_loss(y, model.predict_proba(x)), rel=1e-9)
    # a mistake at 1e-300 probability: predict_log_proba gives -inf, the score a finite loss
    model = LogisticRegression(C=1e6).fit(np.array([[-1.0], [1.0]]) * 1e3, [0, 1])
    far = np.array([[-1e6]])
    with np.errstate(divide="ignore"):
        assert np.isinf(-model.predict_log_proba(far)[0, 1])
    assert np.isfinite(baseline_run.score(model, far, np.array([1]), 2)["loss"])


def test_ties_go_to_the_lower_loss_then_the_smaller_c():
    def candidate(c, accuracy, loss):
        return baseline_run.Candidate(c, None, {"accuracy": accuracy, "loss": loss}, 1, True, 0.0)

    grid = [candidate(0.1, 0.7, 0.5), candidate(1.0, 0.8, 0.6), candidate(10.0, 0.8, 0.4)]
    assert baseline_run.choose(grid).c == 10.0
    grid = [candidate(0.1, 0.8, 0.4), candidate(1.0, 0.8, 0.4)]
    assert baseline_run.choose(grid).c == 0.1


def test_summary_is_json_with_the_trainers_schema(tfidf_run):
    workdir, _ = tfidf_run
    summary = json.loads((workdir / run_folder.SUMMARY).read_text())
    assert summary["steps"] == 1 and summary["selected"]["split"] == "validation"
    for result in summary["results"].values():
        assert list(result) == ["accuracy", "loss", "examples"]  # the classification task's
