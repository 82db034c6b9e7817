"""Image classifiers on converted torchvision / Keras CNNs: ``config.model.name = "image_classifier"``.

    model.arch        "mobilenet_v2" | "vgg" | "resnet" | "inception_v3" | "googlenet"
    model.checkpoint  a catalog name ("torchvision:mobilenet_v2", "keras:vgg16", ...) or "" for a
                      from-scratch baseline; model.arch and model.kwargs then come from the config
    model.checkpoint_path  optional local file for that catalog entry (skips cache and download)
    model.kwargs      extra constructor arguments (e.g. {"dropout": 0.2})
    model.batchnorm   "frozen": BatchNorm always normalises with its running statistics, which stay
                      fixed (the usual choice when fine-tuning on little data, as in Keras'
                      guide); "train": batch statistics in training and running averages updated
                      (needed from scratch)

The checkpoint's 1000-class head is dropped when the task has another number of classes; the new
head is initialised fresh. Preprocessing (input size, normalisation, channel order) comes from the
catalog entry, so a Keras VGG gets BGR caffe inputs and a torchvision one RGB mean/std inputs.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping

import flax.linen as nn
import jax.numpy as jnp

from tlx.data.preprocess import TORCHVISION_IMAGENET, ImagePreprocessing
from tlx.models.registry import ModelBundle, register
from tlx.transfer.groups import flatten
from tlx.weights.catalog import ARCHITECTURES, get_entry, import_object

# arch -> its ordered parameter groups function ("module:function", imported when used); the
# module classes are the catalog's ARCHITECTURES.
PARAM_GROUPS: Mapping[str, str] = {
    "mobilenet_v2": "tlx.models.mobilenet_v2:mobilenet_v2_param_groups",
    "vgg": "tlx.models.vgg:vgg_param_groups",
    "resnet": "tlx.models.resnet:resnet_param_groups",
    "inception_v3": "tlx.models.inception_v3:inception_v3_param_groups",
    "googlenet": "tlx.models.googlenet:googlenet_param_groups",
}
BATCHNORM_MODES = ("frozen", "train")


def _call_with_accepted(fn, kwargs: Mapping):
    """Call fn with the subset of kwargs its signature names (groups depend on few of them)."""
    accepted = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in kwargs.items() if k in accepted})


def _frozen_batchnorm(next_fun, args, kwargs, context):
    """Method interceptor: every BatchNorm normalises with (and keeps) its running statistics,
    while dropout still follows `train`."""
    if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
        kwargs = {**kwargs, "use_running_average": True}
    return next_fun(*args, **kwargs)


def make_forward(module: nn.Module, batchnorm: str):
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"model.batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}.")

    def forward(params, model_state, batch, rng, train):
        variables = {"params": params, **model_state}
        rngs = {"dropout": rng} if train else None
        if train and batchnorm == "train" and "batch_stats" in model_state:
            out, updates = module.apply(
                variables, batch["image"], train=True, rngs=rngs, mutable=["batch_stats"]
            )
            model_state = {**model_state, **updates}
        elif train:
            with nn.intercept_methods(_frozen_batchnorm):
                out = module.apply(variables, batch["image"], train=True, rngs=rngs)
        else:
            out = module.apply(variables, batch["image"], train=False)
        if isinstance(out, tuple):  # auxiliary heads (Inception, GoogLeNet) add nothing here
            out = out[0]
        return out, model_state

    return forward


def _head_regex(groups) -> str:
    names = [name for name, _ in groups]
    if names[-1] != "head":
        raise ValueError(f"the last parameter group must be 'head', got {names}")
    return groups[-1][1]


@register("image_classifier")
def build_image_classifier(cfg: Mapping, num_classes: int) -> ModelBundle:
    checkpoint = cfg.get("checkpoint", "") or ""
    kwargs = dict(cfg.get("kwargs", {}) or {})
    variables, entry = None, None
    if checkpoint:
        entry = get_entry(checkpoint)
        arch = entry.arch
        # The task decides the head; a notop entry's num_classes=None only describes its file.
        kwargs = {k: v for k, v in {**entry.model_kwargs, **kwargs}.items() if k != "num_classes"}
        if cfg.get("arch") and cfg["arch"] != arch:
            raise ValueError(
                f"model.arch={cfg['arch']!r} but checkpoint {checkpoint!r} is a {arch!r}; "
                "leave model.arch empty or make them agree."
            )
    else:
        arch = cfg.get("arch", "")
    if arch not in PARAM_GROUPS:
        raise ValueError(
            f"Unknown image architecture {arch!r}; known: {sorted(PARAM_GROUPS)}. Set "
            "model.checkpoint to a catalog name, or model.arch for a from-scratch model."
        )
    module = import_object(ARCHITECTURES[arch])(num_classes=num_classes, **kwargs)
    groups = _call_with_accepted(import_object(PARAM_GROUPS[arch]), kwargs)
    head = _head_regex(groups)

    preprocessing: ImagePreprocessing = entry.preprocessing if entry else TORCHVISION_IMAGENET
    if cfg.get("image_size"):
        preprocessing = preprocessing.scaled_to(int(cfg["image_size"]))

    pretrained, pretrained_state = None, {}
    if checkpoint:
        from tlx.weights.pretrained import load_catalog_weights  # reads torch / h5 files

        variables, entry = load_catalog_weights(checkpoint, cfg.get("checkpoint_path") or None)
        pretrained = flatten(variables["params"])
        if entry.num_classes != num_classes:  # a new task: the checkpoint's head does not fit
            pretrained = {k: v for k, v in pretrained.items() if not re.search(head, k)}
        pretrained_state = {c: flatten(t) for c, t in variables.items() if c != "params"}

    size = preprocessing.image_size

    def init(rng):
        return module.init(rng, jnp.zeros((1, size, size, 3), jnp.float32), train=False)

    source = checkpoint or "random init (from scratch)"
    return ModelBundle(
        module=module,
        groups=groups,
        forward=make_forward(module, cfg.get("batchnorm", "frozen")),
        init=init,
        pretrained=pretrained,
        pretrained_state=pretrained_state,
        allow_fresh=(head,),
        preprocessing=preprocessing,
        description=f"{arch}{f' {kwargs}' if kwargs else ''} from {source}, "
        f"{num_classes} classes, {size}px",
    )
