"""A trained run back to the format its weights came from (issue 25):

    python -m tlx.export --workdir=runs/minilm_rt --format=hf --out=exported/minilm_rt

`hf`: a Hugging Face folder for BERT-family classifiers (tlx.export.hf_bert); `torchvision`: a
torchvision state dict (safetensors) for MobileNetV2, ResNet and VGG classifiers
(tlx.export.torchvision). The run's selected checkpoint (or `--step`) is exported, with LoRA's
factors merged into the kernels. A format that does not fit the model is refused before anything
is read.
"""

from __future__ import annotations

from pathlib import Path

from tlx.errors import InputError

FORMATS = {"hf": "bert_classifier", "torchvision": "image_classifier"}  # -> model.name


def check_format(fmt: str, model_name: str) -> None:
    if fmt not in FORMATS:
        raise InputError(f"--format={fmt!r}; choose one of {sorted(FORMATS)}.")
    if FORMATS[fmt] != model_name:
        fits = [f for f, name in FORMATS.items() if name == model_name]
        raise InputError(
            f"--format={fmt} exports {FORMATS[fmt]} models; this run's model is "
            f"model.name={model_name!r}"
            + (f": use --format={fits[0]}." if fits else ", which no format exports yet.")
        )


def exportable_params(spec, params) -> dict:
    """The run's flat parameters as a plain model: LoRA merged, nothing else changed."""
    from tlx.peft import merge_lora
    from tlx.tree import flatten

    if spec.peft.method == "lora":
        params = merge_lora(params, spec.peft.scale)
    return flatten(params)


def export_run(workdir: str | Path, fmt: str, out: str | Path, step: int | None = None) -> list:
    """Export run `workdir` (its selected checkpoint, or `step`) to `out`; the files written."""
    from tlx.predict import load_run, read_run_spec

    check_format(fmt, read_run_spec(workdir).model.name)  # before the model is built
    experiment, params, model_state = load_run(workdir, step)
    module, names = experiment.model.module, experiment.label_names
    flat = exportable_params(experiment.spec, params)
    if fmt == "torchvision":
        from tlx.export.torchvision import export_torchvision
        from tlx.tree import flatten

        variables = {"params": flat, "batch_stats": flatten(model_state.get("batch_stats", {}))}
        return export_torchvision(variables, module, len(names), Path(out))
    from tlx.export.hf_bert import export_hf_bert

    return export_hf_bert(flat, module.config, module.pooling, names, Path(out))
