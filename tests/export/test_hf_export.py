"""python -m tlx.export --format=hf: a trained run (LoRA merged) loaded by transformers gives
tlx's logits to 1e-5; a format that does not fit the model is refused first."""

import json

import numpy as np
import pytest

from tests.models.equivalence import assert_close
from tests.test_trainer import tiny_config
from tlx.errors import InputError
from tlx.experiment import build_experiment
from tlx.export import export_run
from tlx.predict import load_run
from tlx.trainer import train

LORA = {"method": "lora", "targets": "attention/self/(query|value)/kernel", "rank": 2}
TEXTS = ["a gripping, funny film", "dull"]


def trained_run(tiny_bert_dir, rt_data_dir, workdir, pooling, peft=None):
    config = tiny_config(tiny_bert_dir, rt_data_dir, total_steps=4)
    config.plan.name = "finetune"
    config.data.eval_examples = 32  # evaluation is not what these tests check
    config.model.pooling = pooling
    if peft:
        config.peft = peft
    train(build_experiment(config), workdir, log=lambda *_: None, progress=False)
    return workdir


def tlx_logits_and_batch(workdir):
    """tlx's logits for TEXTS from the run's selected checkpoint, and the tokenised batch."""
    experiment, params, model_state = load_run(workdir)
    batch = experiment.model.tokenizer(TEXTS, padding="max_length", max_length=16)
    batch = {k: np.asarray(v, np.int32) for k, v in batch.items() if k != "special_tokens_mask"}
    logits, _ = experiment.model.forward(params, model_state, batch, None, False)
    return np.asarray(logits), batch


def torch_batch(batch):
    import torch

    return {k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()}


def test_a_lora_run_with_mean_pooling_exports_an_encoder_and_its_head(
    tiny_bert_dir, rt_data_dir, tmp_path
):
    import torch
    import transformers
    from safetensors.numpy import load_file

    workdir = trained_run(tiny_bert_dir, rt_data_dir, tmp_path / "run", "mean", LORA)
    out = tmp_path / "hf"
    export_run(workdir, "hf", out)
    ours, batch = tlx_logits_and_batch(workdir)
    encoder = transformers.BertModel.from_pretrained(out, attn_implementation="eager").eval()
    head = load_file(str(out / "classifier.safetensors"))
    assert json.loads((out / "tlx_head.json").read_text())["pooling"] == "mean"
    with torch.no_grad():
        hidden = encoder(**torch_batch(batch)).last_hidden_state.numpy()
    mask = batch["attention_mask"][..., None].astype(np.float32)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    theirs = pooled @ head["weight"].T + head["bias"]
    # float32, two frameworks: reassociation differences only (relative 1e-5 of the logits)
    assert_close(ours, theirs, rtol=1e-5)
    names = set(load_file(str(out / "model.safetensors")))
    assert not any("lora" in name for name in names)  # merged into the kernels


def test_a_pooler_run_exports_a_bert_for_sequence_classification(
    tiny_bert_dir, rt_data_dir, tmp_path
):
    import torch
    import transformers

    workdir = trained_run(tiny_bert_dir, rt_data_dir, tmp_path / "run", "pooler")
    export_run(workdir, "hf", tmp_path / "hf")
    ours, batch = tlx_logits_and_batch(workdir)
    model = transformers.BertForSequenceClassification.from_pretrained(
        tmp_path / "hf", attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        theirs = model(**torch_batch(batch)).logits.numpy()
    assert_close(ours, theirs, rtol=1e-5)
    names = load_run(workdir)[0].label_names
    assert [model.config.id2label[i] for i in range(len(names))] == list(names)


def test_a_format_that_does_not_fit_the_model_is_refused(tiny_bert_dir, rt_data_dir, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = tiny_config(tiny_bert_dir, rt_data_dir)
    (workdir / "config.json").write_text(config.to_json())
    with pytest.raises(InputError, match="--format='onnx'"):
        export_run(workdir, "onnx", tmp_path / "out")
    config.model.name = "image_classifier"
    (workdir / "config.json").write_text(config.to_json())
    with pytest.raises(InputError, match="model.name='image_classifier'"):
        export_run(workdir, "hf", tmp_path / "out")
    assert not (tmp_path / "out").exists()
