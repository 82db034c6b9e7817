"""Image batches: torchvision-equal preprocessing, determinism, resumption, workers, padding."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
from PIL import Image

from tlx.data import images
from tlx.data.iterate import iterate_batches
from tlx.data.preprocess import TORCHVISION_IMAGENET, ImagePreprocessing

# Output = input value: value_range 0..255, mean 0, std 1 (to read pixels back from batches).
IDENTITY = ImagePreprocessing(
    image_size=8, resize_size=8, value_range=(0.0, 255.0), mean=(0, 0, 0), std=(1, 1, 1)
)


def photo(height=45, width=70, seed=0) -> np.ndarray:
    """A smooth RGB test image with noise (a resize has something to interpolate)."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    noise = np.random.default_rng(seed).integers(0, 40, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def numbered_source(num_examples, labels=None, size=8):
    """Example i is a constant image of value i % 256 (read back with IDENTITY), label i."""
    pixels = (np.arange(num_examples) % 256).astype(np.uint8)
    images_ = np.broadcast_to(pixels[:, None, None, None], (num_examples, size, size, 1)).copy()
    return images.ArrayImageSource(images_, list(range(num_examples)) if labels is None else labels)


def ids(batch) -> np.ndarray:
    return batch["image"][:, 0, 0, 0].astype(int)


def assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert type(a[key]) is np.ndarray and type(b[key]) is np.ndarray, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def torchvision_eval(image: np.ndarray, p: ImagePreprocessing) -> np.ndarray:
    tv = pytest.importorskip("torchvision")
    transforms = tv.transforms
    pipeline = transforms.Compose(
        [
            transforms.Resize(p.resize_size),
            transforms.CenterCrop(p.image_size),
            transforms.ToTensor(),
            transforms.Normalize(p.mean, p.std),
        ]
    )
    return pipeline(Image.fromarray(image)).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("shape", [(45, 70), (90, 37), (224, 224), (28, 28)])
def test_eval_transform_matches_torchvision(shape):
    image = photo(*shape)
    p = TORCHVISION_IMAGENET.scaled_to(96) if shape != (224, 224) else TORCHVISION_IMAGENET
    source = images.ArrayImageSource(image[None], [0])
    batch = images.make_image_eval_batches(source, p, batch_size=1)[0]
    assert batch["image"].dtype == np.float32 and batch["image"].shape == (
        1,
        *(p.image_size,) * 2,
        3,
    )
    np.testing.assert_allclose(batch["image"][0], torchvision_eval(image, p), atol=2e-6)


def test_random_crop_resize_matches_torchvision_resized_crop():
    tv = pytest.importorskip("torchvision")
    image = photo(60, 80)
    p = ImagePreprocessing(image_size=32, resize_size=36, mean=(0, 0, 0), std=(1, 1, 1))
    make_batch = images.MakeImageBatch(
        images.ArrayImageSource(image[None], [0]), p, augment="random_resized_crop", seed=7
    )
    batch = make_batch(5, np.array([0]))
    # Replay the draws of (seed 7, step 5, position 0) by hand.
    rng = np.random.default_rng((7, 5, 0))
    left, top, right, bottom = images.random_box(80, 60, rng, (0.35, 1.0))
    area = (right - left) * (bottom - top) / (80 * 60)
    assert (
        0.35 * 0.9 <= area <= 1.0 and 3 / 4 * 0.9 <= (right - left) / (bottom - top) <= 4 / 3 * 1.1
    )
    expected = tv.transforms.functional.resized_crop(
        Image.fromarray(image), top, left, bottom - top, right - left, [32, 32]
    )
    expected = np.asarray(expected)
    if rng.random() < 0.5:
        expected = expected[:, ::-1]
    np.testing.assert_allclose(batch["image"][0], expected / 255.0, atol=1e-6)


def test_normalisation_by_hand():
    # A constant image: every output value is (v / 255 * (hi - lo) + lo - mean) / std.
    p = ImagePreprocessing(
        image_size=4, resize_size=4, value_range=(-1.0, 1.0), mean=(0.1, 0.2, 0.3), std=(2, 4, 8)
    )
    image = np.empty((6, 6, 3), np.uint8)
    image[...] = (51, 102, 255)
    batch = images.make_image_eval_batches(
        images.ArrayImageSource(image[None], [0]), p, batch_size=1
    )
    expected = [(51 / 255 * 2 - 1 - 0.1) / 2, (102 / 255 * 2 - 1 - 0.2) / 4, (1 - 0.3) / 8]
    np.testing.assert_allclose(
        batch[0]["image"][0], np.broadcast_to(expected, (4, 4, 3)), atol=1e-6
    )


def test_bgr_flips_channels_with_means_in_bgr_order():
    image = photo()
    rgb = ImagePreprocessing(image_size=32, resize_size=40, mean=(0.4, 0.5, 0.6), std=(1, 2, 3))
    bgr = ImagePreprocessing(
        image_size=32, resize_size=40, mean=(0.6, 0.5, 0.4), std=(3, 2, 1), channel_order="BGR"
    )
    source = images.ArrayImageSource(image[None], [0])
    out_rgb = images.make_image_eval_batches(source, rgb, batch_size=1)[0]["image"]
    out_bgr = images.make_image_eval_batches(source, bgr, batch_size=1)[0]["image"]
    np.testing.assert_allclose(out_bgr, out_rgb[..., ::-1], atol=1e-6)
    assert not np.allclose(out_bgr, out_rgb, atol=1e-2)


def test_keras_caffe_recipe():
    # keras.applications.vgg16.preprocess_input: RGB -> BGR, minus the BGR ImageNet means.
    caffe = ImagePreprocessing(
        image_size=8,
        resize_size=8,
        value_range=(0.0, 255.0),
        mean=(103.939, 116.779, 123.68),
        std=(1.0, 1.0, 1.0),
        channel_order="BGR",
    )
    image = photo(8, 8)
    batch = images.make_image_eval_batches(
        images.ArrayImageSource(image[None], [0]), caffe, batch_size=1
    )
    expected = image[..., ::-1].astype(np.float32) - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(batch[0]["image"][0], expected, atol=1e-4)


def test_grayscale_is_repeated_to_three_channels():
    rgb = photo()
    gray = rgb[..., :1]
    p = TORCHVISION_IMAGENET.scaled_to(32)
    from_gray = images.make_image_eval_batches(
        images.ArrayImageSource(gray[None], [0]), p, batch_size=1
    )
    from_rgb = images.make_image_eval_batches(
        images.ArrayImageSource(np.repeat(gray, 3, axis=-1)[None], [0]), p, batch_size=1
    )
    np.testing.assert_allclose(from_gray[0]["image"], from_rgb[0]["image"], atol=1e-6)
    unnormalised = from_gray[0]["image"][0] * np.array(p.std) + np.array(p.mean)
    np.testing.assert_allclose(unnormalised[..., 0], unnormalised[..., 2], atol=1e-5)


def test_alpha_is_dropped():
    rgba = np.concatenate([photo(), np.full((45, 70, 1), 7, np.uint8)], -1)
    p = TORCHVISION_IMAGENET.scaled_to(32)
    out = images.make_image_eval_batches(images.ArrayImageSource(rgba[None], [0]), p, batch_size=1)
    ref = images.make_image_eval_batches(
        images.ArrayImageSource(rgba[None, ..., :3].copy(), [0]), p, batch_size=1
    )
    np.testing.assert_array_equal(out[0]["image"], ref[0]["image"])


def test_train_batch_fields_and_value_range():
    source = images.ArrayImageSource(np.stack([photo(seed=i) for i in range(5)]), [0, 1, 2, 3, 4])
    p = TORCHVISION_IMAGENET.scaled_to(48)
    batch = images.make_image_train_batches(source, p, batch_size=4, seed=0)[2]
    assert set(batch) == {"image", "label"}
    assert batch["image"].dtype == np.float32 and batch["image"].shape == (4, 48, 48, 3)
    assert batch["label"].dtype == np.int32 and batch["label"].shape == (4,)
    lo = (0 - np.array(p.mean)) / np.array(p.std)
    hi = (1 - np.array(p.mean)) / np.array(p.std)
    assert (batch["image"] >= lo - 1e-5).all() and (batch["image"] <= hi + 1e-5).all()


def test_augmentation_is_a_pure_function_of_seed_and_step():
    one = images.ArrayImageSource(photo()[None], [3])  # every row: the same image, own draws
    p = TORCHVISION_IMAGENET.scaled_to(32)
    ds = images.make_image_train_batches(one, p, batch_size=4, seed=1)
    again = images.make_image_train_batches(one, p, batch_size=4, seed=1)
    other_seed = images.make_image_train_batches(one, p, batch_size=4, seed=2)
    for step in (0, 3, 10**9):
        assert_batches_equal(ds[step], ds[step])
        assert_batches_equal(ds[step], again[step])  # a rebuilt pipeline: a resumed run
    batch = ds[0]["image"]
    assert len({row.tobytes() for row in batch}) == 4  # positions draw different crops
    assert not np.array_equal(ds[0]["image"], ds[1]["image"])  # so do steps
    assert not np.array_equal(ds[0]["image"], other_seed[0]["image"])  # and seeds


@pytest.mark.parametrize("augment", ["flip", "none"])
def test_flip_and_none(augment):
    image = photo(40, 40)
    p = ImagePreprocessing(image_size=32, resize_size=40, mean=(0, 0, 0), std=(1, 1, 1))
    one = images.ArrayImageSource(image[None], [0])
    centre = images.make_image_eval_batches(one, p, batch_size=1)[0]["image"][0]
    rows = np.concatenate(
        [
            images.make_image_train_batches(one, p, batch_size=8, seed=0, augment=augment)[s][
                "image"
            ]
            for s in range(2)
        ]
    )
    flipped = [np.array_equal(row, centre[:, ::-1]) for row in rows]
    assert all(np.array_equal(row, centre) or f for row, f in zip(rows, flipped))
    assert any(flipped) == (augment == "flip") and not all(flipped)


def test_every_epoch_is_a_new_permutation():
    ds = images.make_image_train_batches(
        numbered_source(40), IDENTITY, batch_size=8, seed=0, augment="none"
    )
    orders = np.concatenate([ids(ds[s]) for s in range(20)]).reshape(4, 40)
    for order in orders:
        assert sorted(order) == list(range(40))
    assert len({tuple(order) for order in orders}) == 4
    np.testing.assert_array_equal(
        np.concatenate([ds[s]["label"] for s in range(5)]), orders[0]
    )  # labels travel with their images


def test_random_access_equals_sequential_iteration():
    source = images.ArrayImageSource(np.stack([photo(seed=i) for i in range(7)]), list(range(7)))
    ds = images.make_image_train_batches(
        source, TORCHVISION_IMAGENET.scaled_to(24), batch_size=3, seed=5
    )
    iterator = iterate_batches(ds, 4)
    for step in range(4, 12):
        assert_batches_equal(next(iterator), ds[step])
    iterator.close()
    for step, batch in zip(range(3), iter(ds)):
        assert_batches_equal(batch, ds[step])


def test_batches_reach_the_device_from_the_reading_thread():
    import threading

    import jax

    source = images.ArrayImageSource(np.stack([photo(seed=i) for i in range(5)]), list(range(5)))
    ds = images.make_image_train_batches(
        source, TORCHVISION_IMAGENET.scaled_to(24), batch_size=2, seed=1
    )
    threads = set()

    def put(batch):
        threads.add(threading.get_ident())
        return jax.device_put(batch)

    iterator = iterate_batches(ds, 2, to_device=put)
    for step in range(2, 6):
        batch = next(iterator)
        assert isinstance(batch["image"], jax.Array)
        assert_batches_equal({k: np.asarray(v) for k, v in batch.items()}, ds[step])
    iterator.close()
    assert threads and threading.get_ident() not in threads


class ProbeSource:
    """Fails the comparison if a grain worker has a JAX backend (a GPU context) initialised."""

    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        example = dict(self.source[index])
        if multiprocessing.parent_process() is not None:  # in a worker
            import sys

            xla_bridge = sys.modules.get("jax._src.xla_bridge")
            if xla_bridge is not None and xla_bridge.backends_are_initialized():
                example["label"] += 1000
        return example


@pytest.mark.slow
def test_workers_give_the_same_batches_without_jax():
    source = ProbeSource(
        images.ArrayImageSource(np.stack([photo(seed=i) for i in range(10)]), list(range(10)))
    )
    ds = images.make_image_train_batches(
        source, TORCHVISION_IMAGENET.scaled_to(24), batch_size=4, seed=3
    )
    iterator = iterate_batches(ds, 7, num_workers=2, prefetch=2)
    got = [next(iterator) for _ in range(6)]
    iterator.close()
    for step, batch in zip(range(7, 13), got):
        assert_batches_equal(batch, ds[step])


def test_eval_covers_every_example_once_with_exact_weights():
    ds = images.make_image_eval_batches(numbered_source(23), IDENTITY, batch_size=8)
    batches = list(iterate_batches(ds, 0))
    assert len(ds) == len(batches) == 3
    for batch in batches:
        assert batch["image"].shape == (8, 8, 8, 3) and batch["weight"].dtype == np.float32
    weights = np.concatenate([b["weight"] for b in batches])
    np.testing.assert_array_equal(weights, [1.0] * 23 + [0.0])
    np.testing.assert_array_equal(np.concatenate([ids(b) for b in batches])[:23], np.arange(23))
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:23], np.arange(23))
    assert batches[-1]["label"][7] == 0
    # Padding rows are 0 after normalisation too (a black image would not be: -mean / std).
    padded = images.make_image_eval_batches(numbered_source(3), TORCHVISION_IMAGENET, batch_size=4)
    assert (padded[0]["image"][3] == 0).all() and (padded[0]["image"][:3] != 0).any()


def test_num_examples_is_a_stratified_stable_subset():
    labels = [0] * 60 + [1] * 30 + [2] * 10
    source = numbered_source(100, labels=labels)

    def seen(seed, subset_seed=None):
        ds = images.make_image_train_batches(
            source, IDENTITY, batch_size=20, seed=seed, num_examples=20,
            subset_seed=subset_seed, augment="none",
        )  # fmt: skip
        epoch0, epoch1 = ids(ds[0]), ids(ds[1])  # one batch is one epoch
        assert sorted(epoch0) == sorted(epoch1) and len(set(epoch0)) == 20
        return frozenset(epoch0)

    subset = seen(0)
    assert sorted(np.bincount([labels[i] for i in subset])) == [2, 6, 12]  # 60/30/10 %
    assert seen(0) == subset  # stable
    assert seen(1) != subset  # each training seed its own subset by default ...
    assert seen(1, subset_seed=0) == subset  # ... unless subset_seed fixes it
    balanced = images.Subset(numbered_source(500, labels=[i % 10 for i in range(500)]), 100, seed=4)
    assert np.bincount(balanced.labels).tolist() == [10] * 10
    with pytest.raises(ValueError, match="num_examples"):
        images.make_image_train_batches(source, IDENTITY, batch_size=5, seed=0, num_examples=101)


def test_subset_rounds_to_the_exact_size():
    labels = [0] * 7 + [1] * 7 + [2] * 7
    for n in range(1, 22):
        subset = images.Subset(numbered_source(21, labels=labels), n, seed=0)
        counts = np.bincount(subset.labels, minlength=3)
        assert counts.sum() == n and counts.max() - counts.min() <= 1


def test_invalid_arguments():
    source = numbered_source(4)
    with pytest.raises(ValueError, match="augment"):
        images.make_image_train_batches(source, IDENTITY, batch_size=2, seed=0, augment="mixup")
    with pytest.raises(ValueError, match="interpolation"):
        bad = ImagePreprocessing(image_size=8, resize_size=8, interpolation="cubic-ish")
        images.make_image_eval_batches(source, bad, batch_size=2)
    with pytest.raises(ValueError, match="crop_scale"):
        images.make_image_train_batches(source, IDENTITY, batch_size=2, seed=0, crop_scale=(0, 1))
    with pytest.raises(ValueError, match="batch_size"):
        images.make_image_eval_batches(source, IDENTITY, batch_size=0)
    with pytest.raises(ValueError, match="uint8"):
        images.ArrayImageSource(np.zeros((2, 4, 4, 3), np.float32), [0, 1])


@pytest.mark.parametrize("interpolation", ["nearest", "bicubic", "lanczos"])
def test_interpolation_is_pil_resampling(interpolation):
    image = photo(30, 30)
    p = ImagePreprocessing(
        image_size=20, resize_size=20, mean=(0, 0, 0), std=(1, 1, 1), interpolation=interpolation
    )
    out = images.make_image_eval_batches(images.ArrayImageSource(image[None], [0]), p, batch_size=1)
    resampling = Image.Resampling[interpolation.upper()]
    expected = np.asarray(Image.fromarray(image).resize((20, 20), resampling)) / 255.0
    np.testing.assert_allclose(out[0]["image"][0], expected, atol=1e-6)


def test_crop_draws_random_resized_crops_and_never_mirrors():
    """The crop augment takes the crops random_resized_crop takes with one seed, minus flips."""
    one = images.ArrayImageSource(photo()[None], [3])
    p = TORCHVISION_IMAGENET.scaled_to(32)
    crop = images.make_image_train_batches(one, p, batch_size=16, seed=1, augment="crop")[0]
    both = images.make_image_train_batches(one, p, batch_size=16, seed=1)[0]
    same = [np.array_equal(a, b) for a, b in zip(crop["image"], both["image"])]
    mirrored = [np.array_equal(a, b[:, ::-1]) for a, b in zip(crop["image"], both["image"])]
    assert all(s or m for s, m in zip(same, mirrored))  # each row: the crop, flipped or not
    assert any(mirrored) and any(same)  # random_resized_crop flipped some; crop none
    assert len({row.tobytes() for row in crop["image"]}) == 16  # and the crops differ
