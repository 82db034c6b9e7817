"""Tokenised, length-bucketed batches of text-classification examples, with grain.

Training batches are a random-access, infinite `grain.MapDataset`: `ds[step]` is the global batch of
training step `step`, a pure function of (seed, step), so a killed run resumes by reading ds[s].
Each batch is padded only to the smallest bucket length that fits its longest example, so a jitted
step sees a handful of shapes instead of one shape per batch or max_length everywhere.

The pipeline draws each step's example *indices* (`sampling.EpochIndexBatches`); one map reads, tokenises and pads
a whole batch. A per-example map costs grain ~40-100 us of bookkeeping per example on top of the
tokenizer's ~65 us, and tokenising a batch at once lets the Rust tokenizer use every core.
"""

from __future__ import annotations

from collections.abc import Sequence

import grain
import numpy as np
import tokenizers

from tlx.data.sampling import (
    ONE_PROCESS,
    CacheableExamples,
    Shard,
    check_sizes,
    train_index_batches,
)


def bucket_lengths(buckets: Sequence[int], max_length: int) -> tuple[int, ...]:
    """Sorted padded lengths: the buckets below max_length, and max_length itself."""
    if max_length < 2 or any(b < 1 for b in buckets):
        raise ValueError(f"Need max_length >= 2 and positive buckets; got {max_length}, {buckets}.")
    return tuple(sorted({b for b in buckets if b < max_length} | {max_length}))


class BatchTokenizer:
    """Texts -> token ids with [CLS]/[SEP], truncated to max_length; picklable for grain workers.

    Runs a private copy of the Rust tokenizer behind a Hugging Face fast tokenizer: truncation is
    set without touching the caller's tokenizer, transformers' per-call Python overhead is skipped,
    and the ids match `tokenizer(text, truncation=True, max_length=max_length)` exactly.
    """

    def __init__(self, tokenizer, max_length: int | None):
        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        if not isinstance(backend, tokenizers.Tokenizer):
            raise TypeError(
                f"Need a Hugging Face *fast* tokenizer (or a tokenizers.Tokenizer); got "
                f"{type(tokenizer).__name__}. Load one with AutoTokenizer.from_pretrained(folder)."
            )
        self.backend = tokenizers.Tokenizer.from_str(backend.to_str())
        self.backend.no_padding()
        if max_length is None:
            self.backend.no_truncation()
        else:
            self.backend.enable_truncation(max_length)
        pad_id = getattr(tokenizer, "pad_token_id", None)
        if pad_id is None:
            pad_id = (backend.padding or {}).get("pad_id", 0)
        self.pad_id = int(pad_id)

    def __call__(self, texts: Sequence[str]) -> list[tokenizers.Encoding]:
        # Parallel over cores in Rust. In grain worker processes forked after the parent has
        # tokenised, tokenizers falls back to one thread (with a warning unless
        # TOKENIZERS_PARALLELISM is set); the ids are the same either way.
        return self.backend.encode_batch(list(texts))


class MakeBatch:
    """Example indices -> one padded batch of numpy arrays (the map of the grain pipeline).

    With `batch_size` set (evaluation), a short final batch is filled with dummy rows of weight 0.
    A dummy row is an empty text, i.e. [CLS] [SEP], rather than pure padding, so that no attention
    row is fully masked (which can give NaN, and NaN * weight 0 is still NaN).

    With a `shard` of several processes, `indices` are still the global batch's, and the batch is
    the shard's rows of it (evaluation: batch_size / count rows, dummies included) padded to the
    global batch's length, so that every process builds the same shape while reading and
    tokenising only its own examples. The length comes from every example's token count,
    counted once when the maker is built (a pass of the Rust tokenizer over the source).
    """

    def __init__(
        self,
        source,
        tokenizer: BatchTokenizer,
        lengths: Sequence[int],
        batch_size=None,
        shard: Shard = ONE_PROCESS,
    ):
        self.source = source
        self.tokenizer = tokenizer
        self.lengths = tuple(lengths)
        self.batch_size = batch_size
        self.shard = shard
        self.token_counts = None
        if shard.count > 1:
            if batch_size is not None:
                shard.rows(batch_size, "eval batch size")  # checked here, before any batch
            self.token_counts = _token_counts(source, tokenizer)

    def for_shard(self, shard: Shard) -> MakeBatch:
        """The same batches, `shard`'s rows of them (itself for one process)."""
        if shard == self.shard:
            return self
        return MakeBatch(self.source, self.tokenizer, self.lengths, self.batch_size, shard)

    def __call__(self, indices: np.ndarray) -> dict:
        if self.shard.count == 1:
            return self._make(indices, self.batch_size)
        indices = np.asarray(indices)
        rows = self.shard.rows(self.batch_size or len(indices))
        longest = int(self.token_counts[indices].max())  # the global batch's, as in one process
        length = next(b for b in self.lengths if b >= longest)
        per_shard = None if self.batch_size is None else self.batch_size // self.shard.count
        return self._make(indices[rows], per_shard, length)

    def _make(self, indices, batch_size: int | None, length: int | None = None) -> dict:
        examples = [self.source[int(i)] for i in indices]
        texts = [e["text"] for e in examples]
        labels = [e["label"] for e in examples]
        num_dummies = 0 if batch_size is None else batch_size - len(examples)
        encodings = self.tokenizer(texts + [""] * num_dummies)
        if length is None:
            longest = max(len(e.ids) for e in encodings)
            length = next(b for b in self.lengths if b >= longest)

        shape = (len(encodings), length)
        input_ids = np.full(shape, self.tokenizer.pad_id, np.int32)
        token_type_ids = np.zeros(shape, np.int32)
        attention_mask = np.zeros(shape, np.int32)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            input_ids[row, :n] = encoding.ids
            token_type_ids[row, :n] = encoding.type_ids
            attention_mask[row, :n] = 1
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "label": np.array(labels + [0] * num_dummies, np.int32),
        }
        if batch_size is not None:
            batch["weight"] = np.array([1.0] * len(examples) + [0.0] * num_dummies, np.float32)
        return batch


def _token_counts(source, tokenizer: BatchTokenizer, chunk: int = 4096) -> np.ndarray:
    """Every example's token count as `tokenizer` encodes it (truncated, [CLS]/[SEP] included)."""
    counts = []
    for start in range(0, len(source), chunk):
        texts = [source[i]["text"] for i in range(start, min(start + chunk, len(source)))]
        counts += [len(e.ids) for e in tokenizer(texts)]
    return np.asarray(counts, np.int32)


class Subset:
    """Random-access view of a fixed random subset of `source` (in source order)."""

    def __init__(self, source, num_examples: int, seed: int = 0):
        if not 0 < num_examples <= len(source):
            raise ValueError(f"num_examples={num_examples}, but the source has {len(source)}.")
        self.source = source
        self.indices = np.sort(np.random.default_rng(seed).permutation(len(source))[:num_examples])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.source[int(self.indices[index])]


def make_train_batches(
    source,
    tokenizer,
    *,
    batch_size: int,
    seed: int,
    max_length: int = 128,
    buckets: Sequence[int] = (32, 64, 128),
    num_examples: int | None = None,
    subset_seed: int = 0,
    shard: Shard = ONE_PROCESS,
) -> grain.MapDataset:
    """Infinite random-access training batches: `ds[step]` is the global batch of that step
    (with a `shard` of several processes, that process's rows of it: see `MakeBatch`).

    Deterministic in (seed, step); every epoch is a new permutation, and a batch may span two
    epochs. Batches are dicts of numpy arrays: input_ids, attention_mask, token_type_ids int32
    [B, L] and label int32 [B], with L the smallest of `bucket_lengths(buckets, max_length)` that
    fits the batch's longest example (truncated to max_length). `num_examples` trains on a fixed
    random subset drawn with `subset_seed`, not `seed`, so runs that differ in seed share it.
    """
    examples = cacheable_examples(
        source,
        tokenizer,
        batch_size=batch_size,
        seed=seed,
        max_length=max_length,
        buckets=buckets,
        num_examples=num_examples,
        subset_seed=subset_seed,
    )
    return examples.index_batches.map(examples.make_batch.for_shard(shard))


def cacheable_examples(
    source,
    tokenizer,
    *,
    batch_size: int,
    seed: int,
    max_length: int = 128,
    buckets: Sequence[int] = (32, 64, 128),
    num_examples: int | None = None,
    subset_seed: int = 0,
    recipe: str = "",
) -> CacheableExamples:
    """The examples of `make_train_batches` (same arguments) as fixed inputs: tokenisation is
    deterministic, so text training batches are always cacheable."""
    check_sizes(source, batch_size)
    if num_examples is not None:
        source = Subset(source, num_examples, subset_seed)
    lengths = bucket_lengths(buckets, max_length)
    return CacheableExamples(
        num_examples=len(source),
        index_batches=train_index_batches(len(source), batch_size, seed),
        make_batch=MakeBatch(source, BatchTokenizer(tokenizer, max_length), lengths),
        recipe=f"{recipe} max_length={max_length} subset={num_examples},{subset_seed}",
        pad_lengths=lengths,
    )


def make_eval_batches(
    source,
    tokenizer,
    *,
    batch_size: int,
    max_length: int = 128,
    buckets: Sequence[int] = (32, 64, 128),
    shard: Shard = ONE_PROCESS,
) -> grain.MapDataset:
    """Finite batches in source order, every example exactly once (supports len, [i], iteration).

    Like training batches, plus `weight` float32 [B]: 1 for real examples, 0 for the dummy rows that
    fill the last batch to batch_size, so every batch has B rows and weighted metrics are exact.
    With a `shard` of several processes, each batch is that process's rows of it (B / count).
    """
    check_sizes(source, batch_size)
    lengths = bucket_lengths(buckets, max_length)
    make_batch = MakeBatch(
        source, BatchTokenizer(tokenizer, max_length), lengths, batch_size, shard
    )
    return grain.MapDataset.range(len(source)).batch(batch_size).map(make_batch)


def token_lengths(source, tokenizer) -> np.ndarray:
    """Untruncated token count, [CLS]/[SEP] included, of every example (to choose buckets)."""
    encodings = BatchTokenizer(tokenizer, max_length=None)(
        [source[i]["text"] for i in range(len(source))]
    )
    return np.array([len(e.ids) for e in encodings], np.int32)
