"""A second tlx.train on a run folder that another process is training in is refused before it
builds or writes anything, naming the process that holds the folder."""

import os

from tests.faults.conftest import launch, short_error, train_args
from tlx import run_lock


def test_a_second_run_on_a_busy_folder_is_refused_before_anything_is_written(
    tiny_bert_dir, rt_data_dir, tmp_path
):
    workdir = tmp_path / "run"
    with run_lock.hold(workdir):  # this process stands for a run in progress
        message = short_error(
            launch(train_args(tiny_bert_dir, rt_data_dir, workdir), module="tlx.train")
        )
        assert f"is in use by process {os.getpid()}" in message, message
        assert sorted(p.name for p in workdir.iterdir()) == [run_lock.LOCK]  # nothing written
