"""XLA flag precedence: the user's XLA_FLAGS, then the experiment's, then tlx's defaults."""

import os

from tlx import runtime


def test_user_flags_win_over_experiment_flags_which_win_over_defaults(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_a=user")
    monkeypatch.setattr(runtime, "DEFAULT_XLA_FLAGS", {"--xla_b": "default", "--xla_c": "default"})
    monkeypatch.setattr(runtime, "enable_compilation_cache", lambda: None)
    runtime.configure(experiment_flags="--xla_a=experiment --xla_b=experiment")
    flags = dict(f.split("=") for f in os.environ["XLA_FLAGS"].split())
    assert flags == {"--xla_a": "user", "--xla_b": "experiment", "--xla_c": "default"}
