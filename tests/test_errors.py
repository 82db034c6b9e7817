"""Expected failures end in a short message naming the key or file, never a traceback or the help.

The entry points run as a user runs them (subprocesses); none of these runs reaches training.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO
from tlx.errors import EXIT_CODE, InputError

TEXT_CONFIG = "configs/minilm_rt_progressive.py"
IMAGE_CONFIG = "configs/mnv2_fmnist_finetune.py"
HELP_TEXT = "Experiment config file."  # a flag's help string: shows when absl dumps the usage


def run(*args, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_short_error(result, *needles):
    """Exit code 2, a few lines on stderr naming what is wrong, no traceback, no help text."""
    assert result.returncode == EXIT_CODE, result.stderr[-3000:]
    assert len(result.stderr.strip().splitlines()) < 15, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert HELP_TEXT not in result.stderr and "--helpfull" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("program", ["tlx.train", "tlx.inspect"])
def test_misspelt_config_key_is_named_with_a_suggestion(program, tmp_path):
    args = [f"--config={TEXT_CONFIG}", "--config.optim.learning_rat=1e-3"]
    if program == "tlx.train":
        args.append(f"--workdir={tmp_path}")
    result = run("-m", program, *args)
    assert_short_error(
        result, "--config.optim.learning_rat", "Did you mean --config.optim.learning_rate?"
    )
    assert result.stderr.startswith(f"{program}: ")
    assert not (tmp_path / "config.json").exists()


def test_verbosity_1_adds_the_traceback(tmp_path):
    result = run(
        "-m",
        "tlx.train",
        f"--config={TEXT_CONFIG}",
        f"--workdir={tmp_path}",
        "--config.optim.learning_rat=1e-3",
        "--verbosity=1",
    )
    assert result.returncode == EXIT_CODE
    assert "Traceback" in result.stderr
    last = result.stderr.strip().splitlines()
    assert any(line.startswith("tlx.train: unknown config key") for line in last[-3:])


@pytest.mark.parametrize(
    "override, needles",
    [
        ("--config.nosuch.x=1", ["--config.nosuch.x", "no field 'nosuch'", "Fields of the config"]),
        ("--config.seed.x=1", ["--config.seed.x", "seed is an int value"]),
        ("--config.batch_size=eight", ["--config.batch_size", "expected an int value", "'eight'"]),
        ("--bogus_flag=1", ["bogus_flag"]),
    ],
)
def test_bad_command_lines_are_short_errors(override, needles, tmp_path):
    result = run("-m", "tlx.train", f"--config={TEXT_CONFIG}", f"--workdir={tmp_path}", override)
    assert_short_error(result, *needles)


def test_missing_config_file_and_missing_flag(tmp_path):
    missing = run("-m", "tlx.inspect", "--config=configs/no_such_config.py", "--config.seed=1")
    assert_short_error(missing, "configs/no_such_config.py", "No such file")
    no_workdir = run("-m", "tlx.train", f"--config={TEXT_CONFIG}")
    assert_short_error(no_workdir, "--workdir is required")


@pytest.fixture(scope="module")
def bad_weights(tmp_path_factory):
    """A text file named .pth, a garbage .safetensors, and a pickle whose loading runs code."""
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("bad_weights")
    (folder / "notes.pth").write_text("a checkpoint\nweights of my mobilenet\n")
    (folder / "garbage.safetensors").write_bytes(b"\x00\x01 not a header" * 10)
    marker = folder / "code_ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # creates the marker file when unpickled

    torch.save({"weight": torch.zeros(2), "payload": Payload()}, folder / "malicious.pth")
    return folder


@pytest.mark.parametrize(
    "name, needles",
    [
        ("notes.pth", ["notes.pth", "is not a PyTorch checkpoint", "found text ('a checkpoint"]),
        ("malicious.pth", ["malicious.pth", "was refused", "weights_only=True", ".safetensors"]),
    ],
)
def test_checkpoint_path_that_is_not_a_checkpoint(name, needles, bad_weights):
    result = run(
        "-m",
        "tlx.inspect",
        f"--config={IMAGE_CONFIG}",
        f"--config.model.checkpoint_path={bad_weights / name}",
    )
    assert_short_error(result, *needles)
    assert "IndexError" not in result.stderr and "pop from empty list" not in result.stderr
    assert (
        "weights_only=False" not in result.stderr
        and "weights_only` set to `False" not in result.stderr
    )
    assert not (bad_weights / "code_ran").exists()


def test_readers_name_the_file_and_the_formats(bad_weights):
    from tlx.weights.readers import read_tensors

    with pytest.raises(
        InputError, match="notes.pth is not a PyTorch checkpoint.*Expected a .safetensors"
    ):
        read_tensors(bad_weights / "notes.pth")
    with pytest.raises(InputError, match="garbage.safetensors is not a readable .safetensors file"):
        read_tensors(bad_weights / "garbage.safetensors")
    with pytest.raises(InputError, match="refused") as refused:
        read_tensors(bad_weights / "malicious.pth")
    assert "weights_only=False" not in str(refused.value)
    assert "safetensors.torch.save_file" in str(refused.value)
    assert not (bad_weights / "code_ran").exists()  # nothing in the file ran


def test_readers_refuse_empty_and_tensorless_files(tmp_path):
    torch = pytest.importorskip("torch")
    from tlx.weights.readers import read_tensors

    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(
        InputError, match="empty.bin is not a PyTorch checkpoint: found an empty file"
    ):
        read_tensors(tmp_path / "empty.bin")
    torch.save({"epoch": 3}, tmp_path / "no_tensors.pt")
    with pytest.raises(InputError, match="holds no tensors"):
        read_tensors(tmp_path / "no_tensors.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "good.pt")  # and a real one still reads
    np.testing.assert_array_equal(read_tensors(tmp_path / "good.pt")["w"], np.ones(2))


def test_unreadable_image_is_an_input_error(tmp_path):
    from tlx.predict import read_images

    (tmp_path / "photo.jpg").write_text("not an image")
    with pytest.raises(InputError, match="cannot read image .*photo.jpg"):
        read_images([str(tmp_path / "photo.jpg")])
    with pytest.raises(InputError, match="no_such.png.*no such file"):
        read_images([str(tmp_path / "no_such.png")])


def test_experiments_use_the_same_wrapper(tmp_path):
    extra = run(
        "-m", "experiments.aggregate", f"--workdir={tmp_path}", "extra_argument", timeout=120
    )
    assert_short_error(extra, "experiments.aggregate: Unexpected arguments", "extra_argument")
    bad_key = run(
        "-m",
        "experiments.sweep",
        f"--config={TEXT_CONFIG}",
        f"--workdir={tmp_path / 'sweep'}",
        "--no_such_flag=1",
        timeout=120,
    )
    assert_short_error(bad_key, "experiments.sweep: Unknown command line flag 'no_such_flag'")
