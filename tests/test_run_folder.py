"""The resume rule (tlx.run_folder): which config changes a resume may make, and what it records."""

import json

import pytest

from configs import minilm_rt_progressive
from tlx import run_folder
from tlx.errors import ResumeMismatchError


def test_changes_are_listed_by_dotted_key_with_both_values():
    old = minilm_rt_progressive.get_config()
    new = minilm_rt_progressive.get_config()
    new.optim.learning_rate = 0.05
    new.data.buckets = (64,)
    assert run_folder.config_changes(old, new) == {
        "data.buckets": ([48, 64], [64]),
        "optim.learning_rate": (1e-4, 0.05),
    }
    assert run_folder.config_changes(old, old) == {}


@pytest.mark.parametrize(
    "key, old, new, refused",
    [
        ("eval_every", 120, 60, False),
        ("checkpoint_every", 120, 10, False),
        ("data.workers", 0, 4, False),
        ("data.data_dir", "/old/place", "/new/place", False),  # moved, the same data
        ("parallel", "jit", "pmap", False),  # the same steps, executed otherwise
        ("total_steps", 360, 720, False),  # extended
        ("total_steps", 360, 100, True),  # shortened: another schedule
        ("seed", 0, 1, True),
        ("model.checkpoint", "hf:a", "hf:b", True),
        ("data.name", "rotten_tomatoes", "imdb", True),
        ("plan.every", 36, 12, True),
        ("optim.learning_rate", 1e-4, 2e-4, True),
        ("new_key", None, 1, True),
    ],
)
def test_which_changes_a_resume_may_make(key, old, new, refused):
    assert bool(run_folder.refused_changes({key: (old, new)})) == refused


def test_a_refused_resume_lists_the_keys_and_writes_nothing(tmp_path):
    config = minilm_rt_progressive.get_config()
    run_folder.record_start(tmp_path, config, None, 0)
    written = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    config.seed = 7
    config.eval_every = 10
    with pytest.raises(ResumeMismatchError) as err:
        run_folder.check_resume(tmp_path, config)
    assert "seed: 0 -> 7" in str(err.value) and "eval_every" not in str(err.value).split("(")[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == written


def test_an_allowed_resume_is_recorded_beside_the_original_config(tmp_path):
    config = minilm_rt_progressive.get_config()
    run_folder.record_start(tmp_path, config, run_folder.check_resume(tmp_path, config), 0)
    original = (tmp_path / run_folder.CONFIG).read_bytes()
    config.total_steps = 720
    changes = run_folder.check_resume(tmp_path, config)
    run_folder.record_start(tmp_path, config, changes, 360)
    assert (tmp_path / run_folder.CONFIG).read_bytes() == original
    history = [json.loads(x) for x in (tmp_path / run_folder.HISTORY).read_text().splitlines()]
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[1]["from_step"] == 360
    assert history[1]["changed"] == {"total_steps": {"from": 360, "to": 720}}


def test_a_config_json_that_is_not_json_refuses_the_resume(tmp_path):
    (tmp_path / run_folder.CONFIG).write_text("{half a file")
    with pytest.raises(ResumeMismatchError, match="not valid JSON"):
        run_folder.check_resume(tmp_path, minilm_rt_progressive.get_config())


def test_readers_give_the_config_as_it_now_stands_and_whether_the_run_is_finished(tmp_path):
    config = minilm_rt_progressive.get_config()
    run_folder.record_start(tmp_path, config, None, 0)
    assert not run_folder.is_finished(tmp_path)  # no summary yet
    (tmp_path / run_folder.SUMMARY).write_text(json.dumps({"steps": 360}))
    assert run_folder.is_finished(tmp_path)
    config.total_steps = 720  # a resume extends the run: unfinished until step 720
    run_folder.record_start(tmp_path, config, run_folder.check_resume(tmp_path, config), 360)
    assert run_folder.read_config(tmp_path)["total_steps"] == 720
    assert run_folder.read_config(tmp_path, original=True)["total_steps"] == 360
    assert not run_folder.is_finished(tmp_path)
    with pytest.raises(FileNotFoundError, match="expected a run folder written by tlx.train"):
        run_folder.read_config(tmp_path / "elsewhere")


def test_latest_step_reads_only_finished_step_folders(tmp_path):
    assert run_folder.latest_step(tmp_path) is None
    for name in ("2", "4", "6.orbax-checkpoint-tmp"):  # a save killed at step 6
        (tmp_path / run_folder.CHECKPOINTS / name).mkdir(parents=True)
    assert run_folder.latest_step(tmp_path) == 4


def test_a_metrics_line_cut_by_a_killed_run_is_skipped(tmp_path):
    (tmp_path / run_folder.METRICS).write_text('{"step": 1, "split": "train"}\n{"step": 2, "sp')
    assert run_folder.read_metrics(tmp_path) == [{"step": 1, "split": "train"}]
