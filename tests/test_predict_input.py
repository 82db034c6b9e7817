"""tlx.predict's inputs: blank texts refused, long texts truncated out loud, --json, --step.

One tiny text run (4 steps, checkpoints at steps 2 and 4) is trained once for the module.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_cli import tiny_overrides
from tlx.errors import EXIT_CODE

CONFIG = "configs/minilm_rt_progressive.py"
MAX_LENGTH = 64  # data.max_length of the MiniLM configs
LONG_TEXT = " ".join(["a wonderful, moving film"] * 2500)  # 10,000 words


def run(*args, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def predict(workdir, *args):
    return run("-m", "tlx.predict", f"--workdir={workdir}", *args)


@pytest.fixture(scope="module")
def trained_run(tiny_bert_dir, rt_data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("predict_run") / "run"
    result = run(
        "-m",
        "tlx.train",
        f"--config={CONFIG}",
        *tiny_overrides(tiny_bert_dir, rt_data_dir, workdir),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.parametrize("blank", ["", "   ", "\n\t "])
def test_blank_text_is_refused_before_the_model_is_loaded(blank, tmp_path):
    # The workdir does not exist: the blank text is found first, before anything is read.
    result = predict(tmp_path / "no_run", "A fine film.", blank)
    assert result.returncode == EXIT_CODE, result.stderr[-3000:]
    assert "input 2 of 2 is" in result.stderr
    assert ("empty" if not blank else "blank") in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) < 15
    assert result.stdout == ""


def test_no_inputs_and_a_wrong_workdir_are_short_errors(tmp_path):
    nothing = predict(tmp_path)
    assert nothing.returncode == EXIT_CODE and "no inputs" in nothing.stderr
    assert "How many labels" not in nothing.stderr  # no help text
    missing = predict(tmp_path / "no_run", "A fine film.")
    assert missing.returncode == EXIT_CODE
    assert f"--workdir={tmp_path / 'no_run'} does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.splitlines()) < 15


def test_long_text_is_truncated_with_a_warning(trained_run):
    result = predict(trained_run, "I love this product!", LONG_TEXT)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.stderr  # the short text is not warned about
    assert "text 2" in warnings[0] and "truncated" in warnings[0]
    assert f"kept the first {MAX_LENGTH} of" in warnings[0]
    lines = result.stdout.strip().splitlines()
    assert lines[0].endswith("\tI love this product!")
    labels, echoed = lines[1].split("\t")
    assert echoed == LONG_TEXT[:60] + "…"  # not the 52 KB line
    assert len(lines[1]) < 200


def test_json_output_and_step(trained_run):
    result = predict(trained_run, "--json", "--top_k=2", "I love this product!", LONG_TEXT)
    assert result.returncode == 0, result.stderr[-3000:]
    # stdout holds one JSON object per input and nothing else
    short, long = [json.loads(line) for line in result.stdout.splitlines()]
    assert short["step"] == long["step"] == 4
    assert short["input"] == "I love this product!" and long["input"] == LONG_TEXT
    assert short["truncated"] is False and short["tokens"] == short["tokens_kept"] < MAX_LENGTH
    assert long["truncated"] is True and long["tokens_kept"] == MAX_LENGTH
    assert long["tokens"] > 10_000
    for row in (short, long):
        assert sorted(row["labels"]) == ["fresh", "rotten"]
        assert sorted(row["class_ids"]) == [0, 1]
        assert abs(sum(row["probabilities"]) - 1) < 2e-3
        assert row["probabilities"] == sorted(row["probabilities"], reverse=True)

    earlier = predict(trained_run, "--json", "--step=2", "--top_k=2", "I love this product!")
    assert earlier.returncode == 0, earlier.stderr[-3000:]
    at_2 = json.loads(earlier.stdout)
    assert at_2["step"] == 2
    probability = dict(zip(at_2["labels"], at_2["probabilities"]))
    latest = dict(zip(short["labels"], short["probabilities"]))
    assert probability != latest  # another checkpoint, other parameters

    missing = predict(trained_run, "--step=3", "I love this product!")
    assert missing.returncode == EXIT_CODE
    assert "step 3" in missing.stderr and "[2, 4]" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.splitlines()) < 15
