"""The unlabeled images of every input kind in a pseudo-label table, and the choice
of the default algorithm that follows from how they come."""

import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cheap_views, tiny_cnn

import keras_ssl
from keras_ssl.data import ImageStore, StoreError, can_store, split_zipped


def _data(n_unlabeled=96):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, 16)
    u = rng.integers(0, 256, (n_unlabeled, 8, 8, 3)).astype("float32")
    return x, y, u


class _Batches(keras.utils.PyDataset):
    def __init__(self, images, size=32, endless=False):
        super().__init__()
        self.images, self.size, self.endless = images, size, endless

    @property
    def num_batches(self):
        return None if self.endless else -(-len(self.images) // self.size)

    def __len__(self):
        if self.endless:
            raise TypeError("endless")
        return self.num_batches

    def __getitem__(self, index):
        index = index % self.num_batches if not self.endless else index % 3
        return self.images[index * self.size:(index + 1) * self.size]


class _Loader:
    """A torch-DataLoader-like iterable: `iter()` starts a new pass, `len()` batches."""

    def __init__(self, images, size=40):
        self.images, self.size = images, size

    def __len__(self):
        return math.ceil(len(self.images) / self.size)

    def __iter__(self):
        return (self.images[i:i + self.size] for i in range(0, len(self.images), self.size))


def _sources(u):
    batched = tf.data.Dataset.from_tensor_slices(u).batch(25)
    return {
        "array": u,
        "dataset, batched": batched,
        "dataset, single images": tf.data.Dataset.from_tensor_slices(u),
        "dataset of (images, labels)": tf.data.Dataset.from_tensor_slices(
            (u, np.zeros(len(u), "int64"))).batch(10),
        "dataset, shuffled and repeated": tf.data.Dataset.from_tensor_slices(u)
        .shuffle(len(u)).repeat().batch(30),
        "PyDataset": _Batches(u),
        "generator": (u[i:i + 20] for i in range(0, len(u), 20)),
        "DataLoader-like iterable": _Loader(u),
    }


@pytest.mark.parametrize("name", list(_sources(_data()[2])))
def test_every_finite_source_is_read_whole_in_order_or_as_a_set(name):
    u = _data()[2]
    store = ImageStore.read(_sources(u)[name], verbose=0)
    assert store.images.shape == u.shape
    # 0-255 whole numbers are kept as uint8: a quarter of float32's memory.
    assert store.images.dtype == (np.float32 if name == "array" else np.uint8)
    key = lambda images: sorted(map(bytes, np.asarray(images, "uint8")))
    assert key(store.images) == key(u)
    if name != "dataset, shuffled and repeated":
        np.testing.assert_array_equal(store.images.astype("float32"), u)
    if name == "array":
        assert store.images is u  # no copy


def test_images_that_are_not_0_255_pixels_keep_their_dtype():
    from sklearn.datasets import load_digits

    # Whole numbers 0-16, which the range rule does not read as 0-255 pixels
    # (as uint8 it would).
    digits = load_digits().images[:200, :, :, None].astype("float32")
    store = ImageStore.read(tf.data.Dataset.from_tensor_slices(digits).batch(200), verbose=0)
    assert store.images.dtype == np.float32


def test_endless_and_too_large_sources_say_what_to_do():
    u = _data()[2]
    with pytest.raises(StoreError, match="infinite.*before .repeat"):
        ImageStore.read(tf.data.Dataset.from_tensor_slices(u).repeat().map(lambda a: a),
                        verbose=0)
    with pytest.raises(StoreError, match="no length"):
        ImageStore.read(_Batches(u, endless=True), verbose=0)
    with pytest.raises(StoreError, match="memory budget of 1e-05 GiB.*unlabeled_memory_gb"):
        ImageStore.read(tf.data.Dataset.from_tensor_slices(u).batch(8), memory_gb=1e-5,
                        verbose=0)
    assert not can_store(tf.data.Dataset.from_tensor_slices(u).repeat().map(lambda a: a))
    assert not can_store(tf.data.Dataset.from_tensor_slices(u).repeat().filter(
        lambda a: True))
    assert can_store(tf.data.Dataset.from_tensor_slices(u).shuffle(8).repeat().batch(8))


def test_split_zipped_gives_the_labeled_part_and_the_finite_unlabeled_images():
    x, y, u = _data()
    labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    unlabeled = tf.data.Dataset.from_tensor_slices(u).shuffle(96).repeat().batch(24)
    parts = split_zipped(tf.data.Dataset.zip((labeled, unlabeled)))
    assert parts[0] is labeled
    assert int(parts[1].cardinality()) == 96  # the images under the repeat
    assert split_zipped(labeled) is None


def test_files_are_decoded_and_resized(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for index in range(5):
        path = tmp_path / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype="uint8")).save(path)
        paths.append(path)
    store = ImageStore.from_files(paths, (8, 8), channels=3, verbose=0)
    assert store.images.shape == (5, 8, 8, 3) and store.images.dtype == np.uint8
    assert store.kind == "files" and "5 unlabeled images" in store.describe()
    gray = ImageStore.from_files(paths[:2], (6, 6), channels=1, verbose=0)
    assert gray.images.shape == (2, 6, 6, 1)
    with pytest.raises(StoreError, match="memory budget"):
        ImageStore.from_files(paths, (512, 512), memory_gb=1e-4, verbose=0)


def _fit(unlabeled=None, x=None, **kwargs):
    keras.utils.set_random_seed(0)
    xs, ys, _ = _data()
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), unlabeled_ratio=2, **kwargs)
    ssl.compile(optimizer="adam")
    if x is not None:
        ssl.fit(x, epochs=1, steps_per_epoch=3, verbose=0)
    else:
        ssl.fit(xs, ys, unlabeled=unlabeled, batch_size=8, epochs=1, steps_per_epoch=3,
                verbose=0)
    return ssl


@pytest.mark.parametrize("name", ["dataset, batched", "dataset, single images", "PyDataset",
                                  "generator", "dataset, shuffled and repeated",
                                  "DataLoader-like iterable"])
def test_the_default_is_self_training_on_every_finite_source(name):
    u = _data()[2]
    ssl = _fit(_sources(u)[name])
    assert isinstance(ssl.algorithm, keras_ssl.SelfTraining), ssl.algorithm_reason
    assert "pseudo-label table" in ssl.algorithm_reason
    table = ssl.pseudo_label_table  # every image has its row (made once the model is warm)
    assert len(table) == len(u) and np.asarray(table.images).shape == u.shape


def test_a_zipped_dataset_trains_the_default_with_its_unlabeled_images_in_the_table():
    x, y, u = _data()
    labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    unlabeled = tf.data.Dataset.from_tensor_slices(u).repeat().batch(16)
    ssl = _fit(x=tf.data.Dataset.zip((labeled, unlabeled)))
    assert isinstance(ssl.algorithm, keras_ssl.SelfTraining)
    assert len(ssl.pseudo_label_table) == len(u)


def test_the_store_is_read_once_for_fits_on_the_same_source():
    x, y, u = _data()
    dataset = tf.data.Dataset.from_tensor_slices(u).batch(32)
    ssl = _fit(dataset)
    store = ssl._stores.store
    ssl.fit(x, y, unlabeled=dataset, batch_size=8, epochs=1, steps_per_epoch=2, verbose=0)
    assert ssl._stores.store is store


def test_an_endless_stream_falls_back_to_fixmatch_with_a_warning_that_says_what_it_costs():
    u = _data()[2]
    endless = tf.data.Dataset.from_tensor_slices(u).repeat().map(lambda a: a).batch(16)
    with pytest.warns(UserWarning, match="endless stream.*FixMatch step costs"):
        ssl = _fit(endless)
    assert isinstance(ssl.algorithm, keras_ssl.FixMatch)
    assert "endless" in ssl.algorithm_reason


def test_a_source_over_the_memory_budget_falls_back_when_it_can_be_read_again():
    u = _data()[2]
    with pytest.warns(UserWarning, match="memory budget.*falls back to FixMatch"):
        ssl = _fit(tf.data.Dataset.from_tensor_slices(u).batch(16), unlabeled_memory_gb=1e-6)
    assert isinstance(ssl.algorithm, keras_ssl.FixMatch)
    # A generator cannot be read again: the error is reported instead.
    with pytest.raises(StoreError, match="memory budget"):
        _fit((u[i:i + 16] for i in range(0, 96, 16)), unlabeled_memory_gb=1e-6)


def test_a_table_algorithm_the_user_chose_reports_an_endless_stream():
    x, y, u = _data()
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), cheap_views(keras_ssl.SelfTraining()),
                                        unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    endless = tf.data.Dataset.from_tensor_slices(u).repeat().map(lambda a: a).batch(16)
    with pytest.raises(StoreError, match="infinite"):
        ssl.fit(x, y, unlabeled=endless, batch_size=8, epochs=1, steps_per_epoch=2,
                verbose=0)
    assert ssl.algorithm_reason == "given to SemiSupervisedModel"


def test_fit_says_which_algorithm_and_why(capsys):
    u = _data()[2]
    keras.utils.set_random_seed(0)
    x, y, _ = _data()
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ssl.fit(x, y, unlabeled=tf.data.Dataset.from_tensor_slices(u).batch(32),
                batch_size=8, epochs=1, steps_per_epoch=2, verbose=2)
    out = capsys.readouterr().out
    assert "96 unlabeled images (8x8x3, uint8" in out
    assert "SelfTraining (the default: every unlabeled image fits" in out


def test_memory_budget_is_checked_and_saved():
    with pytest.raises(ValueError, match="unlabeled_memory_gb"):
        keras_ssl.SemiSupervisedModel(tiny_cnn(), unlabeled_memory_gb=0)
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), unlabeled_memory_gb=2.5)
    assert ssl.get_config()["unlabeled_memory_gb"] == 2.5


def test_a_finite_zip_keeps_its_epoch_length():
    x, y, u = _data()
    labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    zipped = tf.data.Dataset.zip((labeled, tf.data.Dataset.from_tensor_slices(u).batch(16)))
    keras.utils.set_random_seed(0)
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    ssl.fit(zipped, epochs=1, verbose=0)  # no steps_per_epoch: the zip's 6 batches
    assert int(keras.ops.convert_to_numpy(ssl.optimizer.iterations)) == 6
    assert len(ssl.pseudo_label_table) == len(u)
