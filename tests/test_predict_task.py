"""tlx.predict asks the run's task what a prediction holds and how it prints: a toy task, defined
here and unknown to tlx, drives the text and --json output through the Task protocol."""

import json
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
from PIL import Image

import tlx.predict
from tlx.data.preprocess import ImagePreprocessing


class Brightness:
    """A toy task: one score per input, the sum of the model's outputs."""

    name = "brightness"

    def predict(self, outputs):
        return jnp.sum(outputs, -1)  # inside jit

    def predict_on_host(self, outputs):
        return np.sum(np.asarray(outputs, np.float64), -1)

    def predictions(self, predicted, label_names, top_k):
        return [{"score": round(float(s), 3), "bright": bool(s > 1.5)} for s in predicted]

    def format_prediction(self, prediction):
        return f"score={prediction['score']:+.2f}" + (" (bright)" if prediction["bright"] else "")


def forward(params, model_state, batch, rng, train):
    """Each image's mean per channel, scaled: [N, 3] outputs."""
    return jnp.mean(batch["image"], axis=(1, 2)) * params["scale"], model_state


def test_a_toy_task_drives_predict_output(tmp_path, monkeypatch, capsys):
    # relative names: a path longer than 60 characters is echoed shortened (tlx.predict), and
    # pytest's tmp_path under xdist is longer than that
    monkeypatch.chdir(tmp_path)
    paths = []
    for value in (0, 255):
        paths.append(f"grey{value}.png")
        Image.fromarray(np.full((6, 6), value, np.uint8)).save(paths[-1])
    preprocessing = ImagePreprocessing(
        image_size=4, resize_size=4, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)
    )
    experiment = SimpleNamespace(
        model=SimpleNamespace(forward=forward, preprocessing=preprocessing),
        task=Brightness(),
        label_names=None,  # this task has no classes
    )
    loaded = (experiment, {"scale": jnp.float32(1.0)}, {}, 7)
    monkeypatch.setattr(tlx.predict, "_load_run", lambda workdir, step: loaded)

    task, rows = tlx.predict.predict_with_run(str(tmp_path), None, paths, top_k=1)
    assert task is experiment.task
    # "input" first, then the task's fields, then predict's own bookkeeping
    assert rows == [
        {"input": paths[0], "score": 0.0, "bright": False, "step": 7},
        {"input": paths[1], "score": 3.0, "bright": True, "step": 7},
    ]

    tlx.predict.print_rows(task.format_prediction, rows, as_json=False)
    assert capsys.readouterr().out.splitlines() == [
        f"score=+0.00\t{paths[0]}",
        f"score=+3.00 (bright)\t{paths[1]}",
    ]
    tlx.predict.print_rows(task.format_prediction, rows, as_json=True)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert lines[0] == json.dumps(rows[0])  # key order kept: input, task fields, step
