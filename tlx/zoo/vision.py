"""Image classifiers on converted torchvision / Keras CNNs: ``config.model.name = "image_classifier"``.

    model.arch        "mobilenet_v2" | "vgg" | "resnet" | "inception_v3" | "googlenet" | "small_cnn"
    model.checkpoint  a catalog name ("torchvision:mobilenet_v2", "keras:vgg16", ...) or "" for a
                      from-scratch baseline; model.arch and model.kwargs then come from the config
    model.checkpoint_path  optional local file for that catalog entry (skips cache and download)
    model.kwargs      extra constructor arguments (e.g. {"dropout": 0.2})
    model.image_size  the square crop fed to the model (0: the checkpoint's own)
    model.resize_size the shorter side before the centre crop (0: the recipe's ratio, e.g.
                      256/224; = image_size: the whole image, e.g. 28 for Fashion-MNIST)
    model.batchnorm   BatchNorm in the groups that train: "frozen" normalises with the running
                      statistics, which stay fixed (the usual choice when fine-tuning on little
                      data, as in Keras' guide); "train": batch statistics in training and running
                      averages updated (needed from scratch); "fixed": as "frozen", and the
                      scale and bias do not train either (torchvision's FrozenBatchNorm2d)
    model.frozen_batchnorm  BatchNorm inside the groups a stage freezes: "frozen" (default),
                      "affine" (scale and bias train, statistics fixed), "train" (statistics
                      re-estimated on the new data, as AdaBN does) or "tent" (both, as TENT
                      adapts); see tlx.transfer.batchnorm

The checkpoint's 1000-class head is dropped when the task has another number of classes; the new
head is initialised fresh. Preprocessing (input size, normalisation, channel order) comes from the
catalog entry, so a Keras VGG gets BGR caffe inputs and a torchvision one RGB mean/std inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Mapping

import flax.linen as nn
import jax.numpy as jnp

from tlx.data.preprocess import TORCHVISION_IMAGENET, ImagePreprocessing
from tlx.spec import BATCHNORM_MODES, ModelSpec
from tlx.transfer.batchnorm import check_policy
from tlx.tree import flatten
from tlx.zoo.bundles import ModelBundle, compute_dtype, sown
from tlx.zoo.catalog import ARCHITECTURES, PARAM_GROUPS, get_entry, import_object


def call_with_accepted(fn, kwargs: Mapping):
    """Call fn with the subset of kwargs its signature names (groups depend on few of them)."""
    accepted = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in kwargs.items() if k in accepted})


def _batchnorm_interceptor(use_running_average):
    """A flax method interceptor: each BatchNorm call gets `use_running_average` from
    `use_running_average(module_path)`, while dropout still follows `train`."""

    def intercept(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
            path = "/".join(context.module.path)
            kwargs = {**kwargs, "use_running_average": use_running_average(path)}
        return next_fun(*args, **kwargs)

    return intercept


def make_forward(
    module: nn.Module,
    batchnorm: str,
    groups=(),
    frozen_batchnorm: str = "frozen",
    trainable_groups=None,
    all_outputs: bool = False,
    endpoint: str = "",
):
    """forward(params, model_state, batch, rng, train) for one plan stage.

    In training, a BatchNorm layer in a trainable group follows `batchnorm` and one in a frozen
    group follows `frozen_batchnorm`: "frozen" normalises with the running statistics and keeps
    them, "train" uses batch statistics and updates the running ones. `trainable_groups=None`
    means every group trains. Evaluation always uses the running statistics. A model returning a
    tuple gives its first output (Inception's auxiliary heads are dropped), or the whole tuple
    with `all_outputs` (a detector's outputs, one per scale). With an `endpoint` (a name the
    module sows into "intermediates") the outputs are (outputs, that endpoint's activations).
    """
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"model.batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}.")
    check_policy(frozen_batchnorm)  # "affine" normalises like "frozen"; its optimizer differs
    compiled = [(name, re.compile(regex)) for name, regex in groups]

    @functools.cache
    def use_running_average(module_path: str) -> bool:
        group = next((n for n, rx in compiled if rx.search(module_path + "/scale")), None)
        trains = trainable_groups is None or group in trainable_groups
        return (batchnorm if trains else frozen_batchnorm) not in ("train", "tent")

    intercept = _batchnorm_interceptor(use_running_average)

    captures = ["intermediates"] if endpoint else []

    def forward(params, model_state, batch, rng, train):
        variables = {"params": params, **model_state}
        if not train:
            # mutable=[] would still return (outputs, {}): False unless features are captured
            out = module.apply(variables, batch["image"], train=False, mutable=captures or False)
            out, updates = out if endpoint else (out, {})
        else:
            mutable = (["batch_stats"] if "batch_stats" in model_state else []) + captures
            with nn.intercept_methods(intercept):
                out = module.apply(
                    variables, batch["image"], train=True, rngs={"dropout": rng}, mutable=mutable
                )
            out, updates = out
            model_state = {**model_state, **{k: v for k, v in updates.items() if k in model_state}}
        if isinstance(out, tuple) and not all_outputs:  # Inception's auxiliary heads: unused
            out = out[0]
        if endpoint:
            return (out, sown(updates.get("intermediates", {}), endpoint)), model_state
        return out, model_state

    return forward


def _head_regex(groups) -> str:
    names = [name for name, _ in groups]
    if names[-1] != "head":
        raise ValueError(f"the last parameter group must be 'head', got {names}")
    return groups[-1][1]


def build_image_classifier(model: ModelSpec | Mapping, num_classes: int) -> ModelBundle:
    spec = ModelSpec.of(model)
    checkpoint, kwargs = spec.checkpoint, dict(spec.kwargs)
    variables, entry = None, None
    if checkpoint:
        entry = get_entry(checkpoint)
        arch = entry.arch
        if entry.is_detector:
            builder = "darknet_detector" if arch == "darknet" else "faster_rcnn"
            raise ValueError(
                f"model.checkpoint={checkpoint!r} is a detector, and model.name="
                "'image_classifier' builds classifiers. Train it with config.task='detection' "
                f"and model.name={builder!r} (as configs/yolo_fashiondet.py and "
                "configs/faster_rcnn_fashiondet.py do); tlx.zoo.load(name).detect(images) and "
                "python -m tlx.predict --model=... give its COCO detections."
            )
        # The task decides the head; a notop entry's num_classes=None only describes its file.
        kwargs = {k: v for k, v in {**entry.model_kwargs, **kwargs}.items() if k != "num_classes"}
        if spec.arch and spec.arch != arch:
            raise ValueError(
                f"model.arch={spec.arch!r} but checkpoint {checkpoint!r} is a {arch!r}; "
                "leave model.arch empty or make them agree."
            )
    else:
        arch = spec.arch
    if arch not in PARAM_GROUPS:
        raise ValueError(
            f"Unknown image architecture {arch!r}; known: {sorted(PARAM_GROUPS)}. Set "
            "model.checkpoint to a catalog name, or model.arch for a from-scratch model."
        )
    if "dtype" in kwargs:
        raise ValueError("set model.compute_dtype, not model.kwargs.dtype.")
    module = import_object(ARCHITECTURES[arch])(
        num_classes=num_classes, dtype=compute_dtype(spec), **kwargs
    )
    groups = call_with_accepted(import_object(PARAM_GROUPS[arch]), kwargs)
    head = _head_regex(groups)

    preprocessing: ImagePreprocessing = entry.preprocessing if entry else TORCHVISION_IMAGENET
    if spec.image_size:
        preprocessing = preprocessing.scaled_to(int(spec.image_size))
    if spec.resize_size:  # = image_size: the whole image, no border cropped away
        preprocessing = dataclasses.replace(preprocessing, resize_size=int(spec.resize_size))

    pretrained, pretrained_state = None, {}
    # random_init: the checkpoint's architecture and preprocessing, none of its weights.
    random_init = bool(spec.random_init)
    if checkpoint and not random_init:
        from tlx.zoo.resolve import load_catalog_weights  # reads torch / h5 files

        variables, entry = load_catalog_weights(checkpoint, spec.checkpoint_path or None)
        pretrained = flatten(variables["params"])
        if entry.num_classes != num_classes:  # a new task: the checkpoint's head does not fit
            pretrained = {k: v for k, v in pretrained.items() if not re.search(head, k)}
        pretrained_state = {c: flatten(t) for c, t in variables.items() if c != "params"}

    size = preprocessing.image_size
    batchnorm, frozen_batchnorm = spec.batchnorm, spec.frozen_batchnorm

    def init(rng):
        return module.init(rng, jnp.zeros((1, size, size, 3), jnp.float32), train=False)

    source = "random init (from scratch)" if random_init or not checkpoint else checkpoint
    return ModelBundle(
        module=module,
        groups=groups,
        forward=make_forward(module, batchnorm, groups, frozen_batchnorm),
        forward_for_stage=lambda trainable, endpoint="": make_forward(
            module, batchnorm, groups, frozen_batchnorm, frozenset(trainable), endpoint=endpoint
        ),
        init=init,
        pretrained=pretrained,
        pretrained_state=pretrained_state,
        allow_fresh=(head,),
        preprocessing=preprocessing,
        description=f"{arch}{f' {kwargs}' if kwargs else ''} from {source}, "
        f"{num_classes} classes, {size}px",
    )
