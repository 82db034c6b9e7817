"""The Python API: a pretrained model by name, converted and ready to apply.

    import tlx.zoo
    model = tlx.zoo.load("torchvision:mobilenet_v2")
    model.classify([image])                  # [[("palace", 0.69), ...]]
    tlx.zoo.load("darknet:yolov3-tiny").detect([image])  # boxes, scores, COCO labels
    text = tlx.zoo.load("hf:sentence-transformers/all-MiniLM-L6-v2")
    text.embed(["A man is eating food."])    # [1, 384], L2-normalised

`load` takes a catalog name (`tlx.zoo.names()`), ``"hf:<repo id>"`` or a local Hugging Face
folder, found by the one resolver (`tlx.zoo.resolve`: offline first). Errors are those of the
command line: an unknown name is an UnknownCheckpointError listing the known ones, a missing file a
CheckpointNotFoundError naming every place looked (both `tlx.errors.TlxError`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tlx.data.preprocess import ImagePreprocessing
from tlx.errors import ConfigError
from tlx.tree import flatten, unflatten
from tlx.zoo import resolve
from tlx.zoo.catalog import (
    CATALOG,
    PACKAGED,
    PARAM_GROUPS,
    CatalogEntry,
    UnknownCheckpointError,
    get_entry,
    import_object,
)
from tlx.zoo.vision import call_with_accepted

if TYPE_CHECKING:
    from tlx.zoo.detectors import PretrainedDetector


@dataclasses.dataclass
class Pretrained:
    """A converted pretrained model: ``module.apply(variables, ...)`` runs it.

    Image models take float32 [N, S, S, 3] batches from :meth:`preprocess` (the checkpoint's own
    recipe) and return logits, or pooled features when headless. Text models take the
    :meth:`tokenize` dict and return ``(last_hidden_state, pooled)`` (or logits for a checkpoint
    with a classifier, when `include_top`).
    """

    name: str
    module: nn.Module
    variables: dict  # {"params": ..., maybe "batch_stats": ...}
    groups: list[tuple[str, str]]  # ordered (name, regex), input -> output, for freezing plans
    include_top: bool
    preprocessing: ImagePreprocessing | None = None  # image models
    tokenizer: Any = None  # text models: a Hugging Face fast tokenizer
    labels: tuple[str, ...] | None = None  # class names of the outputs, where known
    description: str = ""

    @property
    def kind(self) -> str:
        return "text" if self.tokenizer is not None else "image"

    def __call__(self, inputs):
        """The model's output for a preprocessed image batch or a tokenised text batch."""
        if self.kind == "image":
            return _apply_image(self.module, self.variables, jnp.asarray(inputs))
        return _apply_text(
            self.module,
            self.variables,
            inputs["input_ids"],
            inputs["attention_mask"],
            inputs["token_type_ids"],
        )

    # --- images ---------------------------------------------------------------------------------

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 HWC images (any size; grayscale or RGB) -> the float32 batch the model expects:
        the evaluation recipe of training (resize, centre crop, normalise)."""
        self._need("image", "preprocess")
        from tlx.data.images import make_image_eval_batches

        batches = make_image_eval_batches(
            [{"image": np.asarray(img), "label": 0} for img in images],
            self.preprocessing,
            batch_size=max(len(images), 1),
        )
        return np.asarray(batches[0]["image"])

    def classify(self, images: Sequence[np.ndarray], top: int = 5) -> list[list[tuple[str, float]]]:
        """The `top` (label, probability) pairs of each image, most likely first."""
        self._need("image", "classify")
        if not self.include_top:
            raise ConfigError(f"{self.name} was loaded headless (include_top=False): no classes.")
        probs = np.asarray(jax.nn.softmax(self(self.preprocess(images)), axis=-1))
        labels = self.labels or tuple(str(i) for i in range(probs.shape[-1]))
        return [[(labels[i], float(p[i])) for i in np.argsort(-p)[:top]] for p in probs]

    # --- text -----------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict:
        """Padded numpy arrays input_ids, attention_mask, token_type_ids."""
        self._need("text", "tokenize")
        encoded = self.tokenizer(
            list(texts),
            padding=True,
            truncation=max_length is not None,
            max_length=max_length,
            return_tensors="np",
        )
        ids = encoded["input_ids"]
        return {
            "input_ids": ids,
            "attention_mask": encoded["attention_mask"],
            "token_type_ids": encoded.get("token_type_ids", np.zeros_like(ids)),
        }

    def embed(self, inputs, normalize: bool = True) -> np.ndarray:
        """One vector per input. Texts: the attention-mask-weighted mean of the last hidden state
        (sentence-transformers' pooling); images: the pooled features of a headless model.
        `normalize` scales each vector to unit length (cosine similarity is then a dot product)."""
        if self.kind == "text":
            if self.include_top and isinstance(self.module, _classifier_class()):
                raise ConfigError(f"{self.name} has a classifier: load it with include_top=False.")
            from tlx.models.bert import masked_mean

            batch = self.tokenize(inputs)
            hidden, _ = self(batch)
            vectors = np.asarray(masked_mean(hidden, jnp.asarray(batch["attention_mask"])))
        else:
            if self.include_top:
                raise ConfigError(f"load {self.name} with include_top=False to embed images.")
            vectors = np.asarray(self(self.preprocess(inputs)))
        if normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
        return vectors

    def _need(self, kind: str, what: str) -> None:
        if self.kind != kind:
            raise ConfigError(f"{self.name} is a {self.kind} model; {what}() is for {kind} models.")


def _apply_image(module: nn.Module, variables, x):
    return _jitted(module, "image")(variables, x)


def _apply_text(module: nn.Module, variables, input_ids, attention_mask, token_type_ids):
    return _jitted(module, "text")(variables, input_ids, attention_mask, token_type_ids)


_JITTED: dict[tuple[int, str], Any] = {}


def _jitted(module: nn.Module, kind: str):
    key = (id(module), kind)
    if key not in _JITTED:
        if kind == "image":
            fn = jax.jit(lambda v, x: module.apply(v, x, train=False))
        else:
            fn = jax.jit(lambda v, ids, mask, types: module.apply(v, ids, mask, types))
        _JITTED[key] = (module, fn)  # the module is kept so its id stays unique
    return _JITTED[key][1]


def _classifier_class():
    from tlx.models.bert import BertForSequenceClassification

    return BertForSequenceClassification


# --- load -----------------------------------------------------------------------------------------


def load(
    name: str,
    *,
    include_top: bool = True,
    checkpoint_path: str | None = None,
    offline: bool | None = None,
) -> Pretrained | PretrainedDetector:
    """The pretrained model called `name`, converted, with its preprocessing.

    `name`: a catalog name (``"torchvision:mobilenet_v2"``, see :func:`names`), ``"hf:<repo id>"``
    or a local Hugging Face folder (config.json + weights + tokenizer); a darknet entry gives a
    tlx.zoo.detectors.PretrainedDetector. `include_top=False` gives
    the headless model (pooled features; for Keras the ``_notop`` file); for text it gives the
    encoder even when the checkpoint has a classifier. `checkpoint_path`: a local file for a catalog
    entry (used as is). `offline`: None follows TLX_OFFLINE / HF_HUB_OFFLINE.
    """
    if name in CATALOG and get_entry(name).is_detector:
        from tlx.zoo.detectors import load_detector

        return load_detector(get_entry(name), checkpoint_path, offline)
    if name in CATALOG:
        return _load_image(get_entry(name), include_top, checkpoint_path, offline)
    if name.startswith("hf:") or pathlib.Path(name).expanduser().is_dir():
        return _load_text(name, include_top)
    if resolve.CATALOG_NAME.match(name):
        get_entry(name)  # raises UnknownCheckpointError, listing the known names
    raise UnknownCheckpointError(
        f"{name!r} is not a catalog name, an hf:<repo id> or an existing local Hugging Face "
        f"folder. Known names: {', '.join(n.name for n in names())}"
    )


def _headless_entry(entry: CatalogEntry) -> CatalogEntry | None:
    """The catalog's own headless file for `entry` (Keras' ``_notop``), if it has one."""
    return CATALOG.get(f"{entry.name}_notop")


def _load_image(entry: CatalogEntry, include_top, checkpoint_path, offline) -> Pretrained:
    if include_top and not entry.include_top:
        full = entry.name.removesuffix("_notop")
        raise ConfigError(
            f"{entry.name} has no classifier (a headless file): load it with include_top=False, "
            f"or load {full!r} for the classifier."
        )
    if not include_top and checkpoint_path is None:
        entry = _headless_entry(entry) or entry
    variables, entry = resolve.load_catalog_weights(
        entry, checkpoint_path, offline=offline, progress=True
    )
    kwargs = dict(entry.model_kwargs)
    if not include_top:
        kwargs["num_classes"] = None  # pooled features ("avg" pooling, each model's default)
    module = entry.build_model(**kwargs)
    size = entry.preprocessing.image_size
    expected = jax.eval_shape(
        lambda: module.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)
    )
    variables = _fit(variables, expected, entry.name)
    groups = import_object(PARAM_GROUPS[entry.arch])
    groups = call_with_accepted(groups, kwargs)
    if not include_top:
        groups = [(g, rx) for g, rx in groups if g != "head"]
    labels = None
    if include_top and entry.labels:
        from tlx.weights.labels import label_names

        labels = label_names(entry.labels)
    return Pretrained(
        name=entry.name,
        module=module,
        variables=variables,
        groups=_nonempty_groups(groups, variables["params"]),
        include_top=include_top,
        preprocessing=entry.preprocessing,
        labels=labels,
        description=f"{entry.arch} from {entry.name}" + ("" if include_top else ", headless"),
    )


def _nonempty_groups(groups, params) -> list[tuple[str, str]]:
    """The groups that hold parameters (a headless VGG has no fc6 / fc7)."""
    import re

    paths = list(flatten(params))
    return [(g, rx) for g, rx in groups if any(re.search(rx, p) for p in paths)]


def _fit(variables: Mapping, expected: Mapping, name: str) -> dict:
    """The converted variables the module expects, every one of them with its shape; the rest (a
    dropped classifier) left out. Raises CheckpointError listing what is missing or mis-shaped."""
    from tlx.errors import CheckpointError

    have = {f"{c}/{p}": v for c, tree in variables.items() for p, v in flatten(tree).items()}
    want = {f"{c}/{p}": v for c, tree in expected.items() for p, v in flatten(tree).items()}
    problems = [f"missing {k} {tuple(s.shape)}" for k, s in want.items() if k not in have]
    problems += [
        f"{k}: file {tuple(have[k].shape)}, model {tuple(s.shape)}"
        for k, s in want.items()
        if k in have and tuple(have[k].shape) != tuple(s.shape)
    ]
    if problems:
        raise CheckpointError(
            f"{name}: the weights do not fit the model:\n  " + "\n  ".join(problems)
        )
    out: dict[str, dict] = {}
    for key in want:
        collection, path = key.split("/", 1)
        out.setdefault(collection, {})[path] = have[key]
    return {c: unflatten(flat) for c, flat in out.items()}


def _load_text(spec: str, include_top: bool) -> Pretrained:
    from tlx.models.bert import BertForSequenceClassification, BertModel, bert_param_groups
    from tlx.weights.hf_bert import load_hf_bert, load_tokenizer

    folder = resolve.resolve_checkpoint(spec)
    config, flat = load_hf_bert(folder)
    has_pooler = any(k.startswith("bert/pooler/") for k in flat)
    head = {k: v for k, v in flat.items() if k.startswith("classifier/")}
    if include_top and head:
        module = BertForSequenceClassification(
            config, num_labels=int(head["classifier/bias"].shape[0]), classifier_dropout=0.0
        )
        params = flat
        groups = bert_param_groups(config.num_hidden_layers, has_pooler=has_pooler)
        labels = _id2label(folder, int(head["classifier/bias"].shape[0]))
    else:
        module = BertModel(config, add_pooling_layer=has_pooler)
        params = {k.removeprefix("bert/"): v for k, v in flat.items() if k.startswith("bert/")}
        groups = bert_param_groups(config.num_hidden_layers, prefix="", has_pooler=has_pooler)
        groups = [(g, rx) for g, rx in groups if g != "head"]
        labels = None
    ids = jnp.zeros((1, 8), jnp.int32)
    expected = jax.eval_shape(lambda: module.init(jax.random.key(0), ids, jnp.ones_like(ids), ids))
    variables = _fit({"params": unflatten(params)}, expected, spec)
    return Pretrained(
        name=spec,
        module=module,
        variables=jax.tree.map(jnp.asarray, variables),
        groups=groups,
        include_top=include_top and bool(head),
        tokenizer=load_tokenizer(folder),
        labels=labels,
        description=f"BERT {config.num_hidden_layers}x{config.hidden_size} from {spec}",
    )


def _id2label(folder: pathlib.Path, n: int) -> tuple[str, ...] | None:
    import json

    mapping = json.loads((folder / "config.json").read_text()).get("id2label") or {}
    if len(mapping) != n:
        return None
    return tuple(mapping[str(i)] if str(i) in mapping else mapping[i] for i in range(n))


# --- names ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Known:
    """A name :func:`load` takes, and whether it loads offline (found on this machine, not hashed
    until loaded)."""

    name: str
    kind: str  # "image" | "detector" | "text"
    offline: bool
    include_top: bool  # False: a headless file
    description: str = ""


def names() -> list[Known]:
    """Every catalog name and every Hugging Face repo tlx ships a packaged copy of, sorted."""
    known = [
        Known(
            e.name,
            "detector" if e.is_detector else "image",
            _image_on_disk(e),
            e.include_top,
            f"{e.arch}, {_input_size(e.preprocessing)}",
        )
        for e in CATALOG.values()
    ]
    known += [
        Known(n, "text", _hub_on_disk(n), False, "Hugging Face BERT-family encoder")
        for n in PACKAGED
        if n.startswith("hf:")
    ]
    return sorted(known, key=lambda k: k.name)


def _input_size(preprocessing) -> str:
    if hasattr(preprocessing, "min_size"):  # a two-stage detector keeps the image's aspect
        return f"short side {preprocessing.min_size}px (long side at most {preprocessing.max_size})"
    return f"{preprocessing.image_size}px"


def _image_on_disk(entry: CatalogEntry) -> bool:
    if resolve.cached_weights_path(entry).is_file():
        return True
    return (
        resolve.find_packaged(entry.packaged, [], lambda p: None if p.is_file() else "no")
        is not None
    )


def _hub_on_disk(spec: str) -> bool:
    looked: list[str] = []
    if resolve.find_packaged(PACKAGED[spec], looked, resolve.folder_problem) is not None:
        return True
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            spec.removeprefix("hf:"),
            allow_patterns=resolve.HUB_PATTERNS,
            cache_dir=resolve.hub_cache_dir(),
            local_files_only=True,
        )
    except Exception:  # not in the cache, in any of the ways huggingface_hub says so
        return False
    return resolve.folder_problem(pathlib.Path(folder)) is None
