"""Feature cache: while the bottom groups stay frozen, compute their output once per example.

A plan stage whose lowest groups are frozen (feature extraction, ``freeze_to``, the early stages of
progressive unfreezing) recomputes the same frozen features for every example in every epoch.
With ``config.feature_cache = "memory"`` or ``"disk"`` the trainer instead

1. finds the *cut*: the module whose output carries everything the frozen prefix passes upward
   (the last module, in call order, whose parameters all belong to the frozen groups; e.g.
   MobileNetV2's ``features_13`` after ``stage_5``, BERT's ``bert/encoder/layer_3``);
2. runs the model once over the training examples in inference mode and keeps the cut's output
   per example (in memory, or as ``.npy`` files under ``WORKDIR/feature_cache/<key>`` that a
   resumed run reuses), together with the labels;
3. trains the stage on batches of cached features: the model runs with a method interceptor that
   returns the cached tensor from the cut module, so everything below it is dead code that XLA
   removes from the compiled step.

The key hashes the cut, the frozen parameters and statistics themselves, and the input recipe
(dataset, subset, preprocessing, tokenizer), so a cache can never be read for other inputs. When a
later stage unfreezes one of the cached groups the cache is dropped (and its files deleted).

Semantics: the frozen groups run as in evaluation (BatchNorm on running statistics, dropout
*inside* them off), which is what feature extraction means; dropout placed after the cut still
applies. Caching therefore needs deterministic inputs (``data.augment = "none"`` for images) and
``model.frozen_batchnorm = "frozen"``; both are checked before any compute. After building, one
batch is run both ways and the logits compared, so a model whose upper groups read anything
besides the cut's output fails loudly instead of training on wrong features.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from tlx.data.sampling import CacheableExamples
from tlx.errors import FeatureCacheError
from tlx.spec import FEATURE_CACHE_MODES as MODES
from tlx.transfer.plans import Stage
from tlx.tree import flatten
from tlx.types import ForwardFn

_NOT_INPUTS = ("label", "weight")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise FeatureCacheError(f"config.feature_cache must be one of {MODES}, got {mode!r}.")
    return mode


def frozen_prefix(stage: Stage, group_names: Sequence[str]) -> tuple[str, ...]:
    """The stage's frozen groups below its lowest trainable one (input side first)."""
    prefix = []
    for name in group_names:
        if stage.multipliers[name] is not None:
            break
        prefix.append(name)
    return tuple(prefix)


# ---------------------------------------------------------------------------------------------
# Where to cut: module call order traced once with abstract values.


def _module_calls(forward: ForwardFn, params, model_state, batch) -> list[str]:
    """'/'-joined paths of the modules whose __call__ returns one array, in return order (eval
    mode). Modules returning tuples (BERT's encoder: states and all hidden states) are skipped."""
    order: list[str] = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and context.module.path and isinstance(out, jax.Array):
            order.append("/".join(context.module.path))
        return out

    def run(p, s, b):
        with nn.intercept_methods(record):
            return forward(p, s, b, None, False)[0]

    jax.eval_shape(run, params, model_state, batch)
    return order


def find_cut(
    forward: ForwardFn, params, model_state, batch, group_of: Mapping[str, str], prefix
) -> str:
    """The module whose output the groups above `prefix` start from (see the module docstring)."""
    prefix = set(prefix)
    owners: dict[str, set[str]] = {}  # module path -> groups of the parameters under it
    for path, group in group_of.items():
        parts = path.split("/")
        for i in range(1, len(parts)):
            owners.setdefault("/".join(parts[:i]), set()).add(group)
    inside = {m for m, groups in owners.items() if groups <= prefix}
    calls = [m for m in _module_calls(forward, params, model_state, batch) if m in inside]
    if not calls:
        raise FeatureCacheError(
            f"No module of the model holds only parameters of the frozen groups {sorted(prefix)}, "
            "so there is no output to cache; set config.feature_cache='off'."
        )
    return calls[-1]


def _replace_output(cut: str, value) -> Callable:
    def intercept(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and "/".join(context.module.path) == cut:
            return value
        return next_fun(*args, **kwargs)

    return intercept


def bottom_fn(forward: ForwardFn, cut: str):
    """(params, model_state, batch) -> the cut module's output, in evaluation mode."""

    def bottom(params, model_state, batch):
        captured = []

        def capture(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name == "__call__" and "/".join(context.module.path) == cut:
                captured.append(out)
            return out

        with nn.intercept_methods(capture):
            forward(params, model_state, batch, None, False)
        return captured[0]  # what follows the cut is unused, so jit drops it

    return bottom


# ---------------------------------------------------------------------------------------------
# The cached training batches.


class FeatureStore:
    """Per-example features: a [N, ...] array, or for per-token outputs (text models cut below
    the pooling) the tokens of all examples concatenated with each example's length."""

    def __init__(self, features, labels, lengths=None, pad_lengths: Sequence[int] = ()):
        self.features, self.labels = features, labels
        self.lengths = lengths
        self.per_token = lengths is not None
        if self.per_token:
            self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.pad_lengths = tuple(pad_lengths)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: np.ndarray) -> dict:
        labels = np.asarray(self.labels[indices], np.int32)
        if not self.per_token:
            return {"features": np.asarray(self.features[indices]), "label": labels}
        lengths = self.lengths[indices]
        longest = int(lengths.max())
        length = next((b for b in self.pad_lengths if b >= longest), longest)
        out = np.zeros((len(indices), length, self.features.shape[-1]), self.features.dtype)
        mask = np.zeros((len(indices), length), np.int32)
        for row, (index, n) in enumerate(zip(indices, lengths)):
            start = self.offsets[index]
            out[row, :n] = self.features[start : start + n]
            mask[row, :n] = 1
        return {"features": out, "attention_mask": mask, "label": labels}


def _is_per_token(batch: dict, features) -> bool:
    # Text inputs are [B, L]; an output with the same L axis is per token (e.g. a BERT layer),
    # one without it is pooled (e.g. the BERT pooler).
    mask = batch.get("attention_mask")
    return mask is not None and features.ndim >= 3 and features.shape[1] == mask.shape[1]


def placeholder_inputs(spec: Mapping[str, tuple], cached: dict) -> dict:
    """Model inputs standing in for the real ones below the cut: zeros of the recorded shapes
    (per-token caches: the cached length and the real attention mask). Only their shapes reach
    the compiled step; their values feed dead code."""
    size = cached["label"].shape[0]
    inputs = {}
    for key, (shape, dtype) in spec.items():
        if "attention_mask" in cached and len(shape) == 1:  # [B, L] text inputs
            shape = (cached["attention_mask"].shape[1],)
        inputs[key] = jnp.zeros((size, *shape), dtype)
    if "attention_mask" in cached:
        inputs["attention_mask"] = cached["attention_mask"]
    return inputs


def top_forward(forward: ForwardFn, cut: str, spec: Mapping[str, tuple]) -> ForwardFn:
    """A forward over cached batches {"features", "label", ...}: the stage's forward with the cut
    module's output replaced by the cached features."""

    def top(params, model_state, batch, rng, train):
        inputs = {**placeholder_inputs(spec, batch), "label": batch["label"]}
        if "weight" in batch:
            inputs["weight"] = batch["weight"]
        with nn.intercept_methods(_replace_output(cut, batch["features"])):
            return forward(params, model_state, inputs, rng, train)

    return top


def skip_unread_inputs(step, frozen: Mapping, state: Mapping, unread_params, unread_state):
    """The split train step taking only the frozen parameters and state it reads: the unread
    ones (below the cut) are made as zeros inside the compiled program, where XLA drops them,
    instead of being passed. Each passed array costs dispatch time: MobileNetV2's ~370 frozen
    arrays cost more than its cached feature-extraction step computes."""
    shape = lambda v: (tuple(v.shape), v.dtype)
    param_shapes = {k: shape(frozen[k]) for k in unread_params}
    state_shapes = {k: shape(state[k]) for k in unread_state}
    zeros = lambda shapes: {k: jnp.zeros(s, d) for k, (s, d) in shapes.items()}

    def step_reading_less(trainable, read_frozen, read_state, opt_state, batch, rng):
        all_frozen = {**zeros(param_shapes), **read_frozen}
        all_state = {**zeros(state_shapes), **read_state}
        return step(trainable, all_frozen, all_state, opt_state, batch, rng)

    return step_reading_less


class FeatureCache:
    """The cache of one frozen prefix, built by :func:`build` and dropped at its stage's end.

    Evaluation splits are cached too, on first use (in memory): their batches are fixed, so
    each is computed once per stage and every later evaluation runs only the upper groups.
    """

    def __init__(self, prefix, cut: str, key: str, store: FeatureStore, spec, directory=None):
        self.prefix, self.cut, self.key = tuple(prefix), cut, key
        self.store, self.spec, self.directory = store, spec, directory
        self._bottom = None  # (jitted bottom, params, model_state): set by build()
        self._eval: dict[str, list[dict]] = {}

    def eval_batches(self, split: str, batches) -> list[dict]:
        """The split's evaluation batches as cached features (computed on the first call)."""
        if split not in self._eval:
            bottom, params, model_state = self._bottom
            cached = []
            for batch in batches:
                inputs = {k: v for k, v in batch.items() if k not in _NOT_INPUTS}
                features = bottom(params, model_state, inputs)
                entry = {"features": features, "label": batch["label"], "weight": batch["weight"]}
                if self.store.per_token:
                    entry["attention_mask"] = batch["attention_mask"]
                cached.append(entry)
            self._eval[split] = cached
        return self._eval[split]

    def train_batches(self, index_batches: grain.MapDataset) -> grain.MapDataset:
        """ds[step]: the cached features of step's examples (the same examples as uncached)."""
        return index_batches.map(self.store.batch)

    def forward(self, stage_forward: ForwardFn) -> ForwardFn:
        return top_forward(stage_forward, self.cut, self.spec)

    def drop(self) -> None:
        self.store, self._bottom, self._eval = None, None, {}
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def unread_inputs(self, group_of: Mapping[str, str], frozen: Mapping, state: Mapping):
        """(parameter paths, state paths) below the cut: the cached step never reads them."""
        prefix = set(self.prefix)
        params = {p for p in frozen if group_of[p] in prefix}
        modules = {p.rsplit("/", 1)[0] for p in params}
        # state paths are '<collection>/<module path>/<name>'
        state_paths = {k for k in state if k.split("/", 1)[-1].rsplit("/", 1)[0] in modules}
        return params, state_paths

    def describe(self) -> str:
        where = f"on disk in {self.directory}" if self.directory else "in memory"
        return (
            f"feature cache: groups {list(self.prefix)} cut at module {self.cut!r}, "
            f"{len(self.store)} examples {where} (key {self.key[:12]})"
        )


def cache_key(cut: str, prefix_params: Mapping, examples: CacheableExamples) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([cut, examples.recipe, examples.num_examples]).encode())
    for path in sorted(prefix_params):
        value = np.asarray(prefix_params[path])
        digest.update(f"{path}{value.shape}{value.dtype}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def _prefix_values(params, model_state, group_of, prefix) -> dict:
    """The frozen prefix's parameters and statistics (what the cached features depend on)."""
    prefix = set(prefix)
    modules = {p.rsplit("/", 1)[0] for p, g in group_of.items() if g in prefix}
    values = {f"params/{p}": v for p, v in flatten(params).items() if group_of.get(p) in prefix}
    for collection, tree in model_state.items():
        for p, v in flatten(tree).items():
            if p.rsplit("/", 1)[0] in modules:
                values[f"{collection}/{p}"] = v
    return values


def _compute(bottom, params, model_state, examples: CacheableExamples, chunk: int, progress):
    """Run the bottom over every example; returns (features, labels, lengths | None)."""
    jitted = jax.jit(bottom)
    pieces, labels, lengths, per_token = [], [], [], None
    starts = range(0, examples.num_examples, chunk)
    for start in tqdm(starts, desc="feature cache", disable=not progress):
        indices = np.arange(start, min(start + chunk, examples.num_examples))
        batch = examples.make_batch(indices)
        padded = {k: _pad_rows(v, chunk) for k, v in batch.items() if k not in _NOT_INPUTS}
        out = np.asarray(jitted(params, model_state, padded))[: len(indices)]
        if per_token is None:
            per_token = _is_per_token(batch, out)
        if per_token:
            n = batch["attention_mask"].sum(axis=1)
            pieces += [out[row, :k] for row, k in enumerate(n)]
            lengths.append(n)
        else:
            pieces.append(out)
        labels.append(batch["label"])
    features = np.concatenate(pieces)
    return features, np.concatenate(labels), (np.concatenate(lengths) if per_token else None)


def _pad_rows(value: np.ndarray, rows: int) -> np.ndarray:
    """Fill a short last chunk with copies of its first row: one compiled shape for all chunks."""
    if len(value) == rows:
        return value
    return np.concatenate([value, np.repeat(value[:1], rows - len(value), axis=0)])


def _input_spec(batch: dict) -> dict:
    return {
        k: (tuple(v.shape[1:]), np.asarray(v).dtype)
        for k, v in batch.items()
        if k not in _NOT_INPUTS
    }


def _save(directory: Path, features, labels, lengths, spec) -> None:
    """Written to a temporary folder renamed into place: a killed build leaves no half cache."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "features.npy", features)
    np.save(tmp / "labels.npy", labels)
    if lengths is not None:
        np.save(tmp / "lengths.npy", lengths)
    meta = {k: [list(shape), np.dtype(dtype).name] for k, (shape, dtype) in spec.items()}
    (tmp / "inputs.json").write_text(json.dumps(meta))
    tmp.rename(directory)


def _load(directory: Path):
    features = np.load(directory / "features.npy", mmap_mode="r")
    labels = np.load(directory / "labels.npy")
    lengths_file = directory / "lengths.npy"
    lengths = np.load(lengths_file) if lengths_file.exists() else None
    meta = json.loads((directory / "inputs.json").read_text())
    spec = {k: (tuple(shape), np.dtype(dtype)) for k, (shape, dtype) in meta.items()}
    return features, labels, lengths, spec


def build(
    *,
    stage_forward: ForwardFn,
    params,
    model_state,
    group_of: Mapping[str, str],
    prefix: Sequence[str],
    examples: CacheableExamples,
    mode: str,
    workdir: Path,
    chunk: int = 64,
    log=print,
    progress: bool = True,
) -> FeatureCache:
    """Find the cut, then load the cache for this key from disk or compute it."""
    chunk = min(chunk, examples.num_examples)
    sample = examples.make_batch(np.arange(chunk))
    sample_inputs = {k: v for k, v in sample.items() if k not in _NOT_INPUTS}
    cut = find_cut(stage_forward, params, model_state, sample_inputs, group_of, prefix)
    key = cache_key(cut, _prefix_values(params, model_state, group_of, prefix), examples)
    directory = Path(workdir) / "feature_cache" / key[:16] if mode == "disk" else None
    if directory is not None and directory.exists():
        features, labels, lengths, spec = _load(directory)
        log(f"Reusing the feature cache in {directory}.")
    else:
        bottom = bottom_fn(stage_forward, cut)
        features, labels, lengths = _compute(bottom, params, model_state, examples, chunk, progress)
        spec = _input_spec(sample)
        if directory is not None:
            _save(directory, features, labels, lengths, spec)
            features = np.load(directory / "features.npy", mmap_mode="r")
    store = FeatureStore(features, labels, lengths, examples.pad_lengths)
    cache = FeatureCache(prefix, cut, key, store, spec, directory)
    cache._bottom = (jax.jit(bottom_fn(stage_forward, cut)), params, model_state)
    check_against_full_model(cache, stage_forward, params, model_state, sample)
    log(cache.describe())
    return cache


def check_against_full_model(cache: FeatureCache, forward, params, model_state, sample) -> None:
    """Logits from cached features must equal the full model's on the first examples."""
    indices = np.arange(len(sample["label"]))
    full, _ = jax.jit(lambda p, s, b: forward(p, s, b, None, False))(params, model_state, sample)
    cached, _ = jax.jit(lambda p, s, b: cache.forward(forward)(p, s, b, None, False))(
        params, model_state, cache.store.batch(indices)
    )
    full, cached = np.asarray(full, np.float32), np.asarray(cached, np.float32)
    scale = max(float(np.abs(full).max()), 1.0)
    error = float(np.abs(full - cached).max())
    if not error <= 1e-3 * scale:
        raise FeatureCacheError(
            f"Logits from the feature cache (cut at module {cache.cut!r}) differ from the full "
            f"model's by {error:.3g} (logit scale {scale:.3g}): the groups above the cut read "
            "something besides that module's output. Set config.feature_cache='off' for this "
            "model, or report the model so its groups can be fixed."
        )
