"""Every input a Keras user passes is trained on correctly (the refusals are in
test_bad_input.py): validation_split, epochs, class and sample weights, label
forms, generators, PyDatasets, folders of image files, and bad values found
further down a stream."""

import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl

RNG = np.random.default_rng(0)
X = RNG.uniform(0, 1, (24, 8, 8, 3)).astype("float32")
Y = RNG.integers(0, 4, 24)
U = RNG.uniform(0, 1, (64, 8, 8, 3)).astype("float32")


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(4),
    ])


def _ssl(algorithm=None, augment_labeled=False, seed=0, **kwargs):
    ssl = keras_ssl.SemiSupervisedModel(
        _model(seed), algorithm or keras_ssl.FixMatch(flip=False), unlabeled_ratio=2,
        augment_labeled=augment_labeled, **kwargs,
    )
    ssl.compile(optimizer="sgd")
    return ssl


def _weights(ssl):
    return [np.array(w) for w in ssl.model.get_weights()]


def _same(a, b):
    return all(np.allclose(p, q, atol=1e-6) for p, q in zip(a, b))


class _Steps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.count = 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1


def test_validation_split_holds_out_the_last_fraction():
    ssl, steps = _ssl(), _Steps()
    history = ssl.fit(X, Y, batch_size=6, epochs=1, shuffle=False, verbose=0,
                      validation_split=0.25, callbacks=[steps])
    assert steps.count == 3  # 18 training images in batches of 6
    held_out = ssl.evaluate(X[18:], Y[18:], verbose=0, return_dict=True)["loss"]
    assert history.history["val_loss"][0] == pytest.approx(held_out, rel=1e-5)


def test_epochs_zero_trains_nothing_and_initial_epoch_counts():
    ssl = _ssl()
    before = _weights(ssl)
    history = ssl.fit(X, Y, unlabeled=U, batch_size=8, epochs=0, verbose=0)
    assert history.history == {}
    assert _same(before, _weights(ssl))
    history = ssl.fit(X, Y, unlabeled=U, batch_size=8, epochs=3, initial_epoch=2, verbose=0)
    assert history.epoch == [2]
    assert not _same(before, _weights(ssl))


def test_class_weight_is_applied():
    plain, ones, heavy = _ssl(), _ssl(), _ssl()
    kwargs = {"batch_size": 8, "epochs": 2, "shuffle": False, "verbose": 0}
    plain.fit(X, Y, **kwargs)
    ones.fit(X, Y, class_weight={c: 1.0 for c in range(4)}, **kwargs)
    heavy.fit(X, Y, class_weight={0: 20.0, 1: 1.0, 2: 1.0, 3: 1.0}, **kwargs)
    assert _same(_weights(plain), _weights(ones))
    assert not _same(_weights(plain), _weights(heavy))


def test_zero_sample_weight_removes_examples():
    kwargs = {"batch_size": 8, "epochs": 2, "shuffle": False, "verbose": 0}
    weights = (Y != 3).astype("float32")
    relabeled = np.where(Y == 3, 0, Y)  # what those examples say must not matter
    a, b, c = _ssl(), _ssl(), _ssl()
    a.fit(X, Y, sample_weight=weights, **kwargs)
    b.fit(X, relabeled, sample_weight=weights, **kwargs)
    c.fit(X, relabeled, **kwargs)
    assert _same(_weights(a), _weights(b))
    assert not _same(_weights(a), _weights(c))


def test_one_hot_and_integer_labels_train_alike_with_the_default_loss():
    kwargs = {"batch_size": 8, "epochs": 2, "shuffle": False, "verbose": 0}
    sparse, dense = _ssl(), _ssl()
    sparse.fit(X, Y, **kwargs)
    dense.fit(X, keras.utils.to_categorical(Y, 4), **kwargs)
    assert _same(_weights(sparse), _weights(dense))
    soft = _ssl()
    smoothed = keras.utils.to_categorical(Y, 4) * 0.9 + 0.025
    history = soft.fit(X, smoothed, validation_data=(X, smoothed), **kwargs)
    assert np.isfinite(history.history["val_loss"]).all()
    assert not _same(_weights(sparse), _weights(soft))


def test_unlabeled_images_change_the_weights_and_the_mask_rate():
    algorithm = keras_ssl.FixMatch(threshold=0.26, flip=False)
    with_u, without = _ssl(algorithm), _ssl(keras_ssl.FixMatch(threshold=0.26, flip=False))
    history = with_u.fit(X, Y, unlabeled=U, batch_size=8, epochs=2, shuffle=False, verbose=0)
    without.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert history.history["mask_rate"][-1] > 0
    assert history.history["unsup_loss"][-1] > 0
    assert not _same(_weights(with_u), _weights(without))


def test_single_entry_containers_are_unwrapped():
    ssl = _ssl()
    history = ssl.fit({"image": X}, [Y], unlabeled=U, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_generator_and_pydataset_inputs_train():
    class Batches(keras.utils.PyDataset):
        def __init__(self, images, labels=None):
            super().__init__()
            self.images, self.labels = images, labels

        def __len__(self):
            return len(self.images) // 8

        def __getitem__(self, i):
            rows = slice(i * 8, (i + 1) * 8)
            if self.labels is None:
                return self.images[rows]
            return self.images[rows], self.labels[rows]

    def batches():
        while True:
            for i in range(3):
                yield X[i * 8:(i + 1) * 8], Y[i * 8:(i + 1) * 8]

    ssl = _ssl(keras_ssl.FixMatch(threshold=0.26, flip=False))
    before = _weights(ssl)
    history = ssl.fit(batches(), unlabeled=Batches(U), epochs=1, steps_per_epoch=4,
                      verbose=0)
    assert history.history["mask_rate"][-1] >= 0 and not _same(before, _weights(ssl))
    history = ssl.fit(Batches(X, Y), unlabeled=U, epochs=1, verbose=0,
                      validation_data=Batches(X, Y))
    assert np.isfinite(history.history["val_loss"]).all()


def test_image_folders_train(tmp_path):
    from PIL import Image

    for i, (image, label) in enumerate(zip(X, Y)):
        folder = tmp_path / "labeled" / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).astype("uint8")).save(folder / f"{i}.png")
    (tmp_path / "unlabeled").mkdir()
    for i, image in enumerate(U):
        Image.fromarray((image * 255).astype("uint8")).save(tmp_path / "unlabeled" / f"{i}.png")
    labeled = keras.utils.image_dataset_from_directory(
        tmp_path / "labeled", image_size=(8, 8), batch_size=8, seed=0, verbose=False)
    one_hot = keras.utils.image_dataset_from_directory(
        tmp_path / "labeled", image_size=(8, 8), batch_size=8, seed=0,
        label_mode="categorical", verbose=False)
    unlabeled = keras.utils.image_dataset_from_directory(
        tmp_path / "unlabeled", labels=None, image_size=(8, 8), batch_size=16, verbose=False)
    ssl = _ssl(keras_ssl.FixMatch(threshold=0.26, flip=False))
    history = ssl.fit(labeled, unlabeled=unlabeled, epochs=1, verbose=0,
                      validation_data=labeled)
    assert ssl.value_range == (0.0, 255.0)  # resized floats in 0-255
    assert np.isfinite(history.history["val_loss"]).all()
    history = ssl.fit(one_hot, unlabeled=unlabeled, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_bad_values_further_down_streams_are_skipped():
    x = X.copy()
    x[8:10] = np.nan  # the second batch: not seen by the first-batch checks
    y = Y.copy()
    y[20] = 9  # outside the 4 classes
    u = U.copy()
    u[40:] = np.inf
    labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    unlabeled = tf.data.Dataset.from_tensor_slices(u).batch(16)
    ssl = _ssl(keras_ssl.FixMatch(threshold=0.26, flip=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = ssl.fit(labeled, unlabeled=unlabeled, epochs=2, verbose=0)
    messages = [str(w.message) for w in caught if "keras-ssl skipped" in str(w.message)]
    assert len(messages) == 2  # one per epoch
    # 3 bad labeled examples per pass (more where the backend reads ahead).
    for message in messages:
        labeled, unlabeled = map(int, re.findall(r"skipped (\d+) labeled examples and "
                                                 r"(\d+) unlabeled", message)[0])
        assert labeled >= 3 and unlabeled > 0
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.isfinite(w).all() for w in _weights(ssl))


def test_failed_fit_sets_no_range_and_standardized_views_free_algorithms_train():
    ssl = _ssl()
    with pytest.raises(keras_ssl.InputError):
        ssl.fit((X * 255).astype("uint8"), Y + 10, unlabeled=U * 255, batch_size=8,
                verbose=0)
    assert ssl.value_range is None
    ssl.fit(X, Y, unlabeled=U, batch_size=8, epochs=1, verbose=0)
    assert ssl.value_range == (0.0, 1.0)
    # Mean Teacher's views are flip + translation: any range trains.
    teacher = _ssl(keras_ssl.MeanTeacher(flip=False))
    standardized = (X - X.mean()) / X.std()
    history = teacher.fit(standardized, Y, unlabeled=(U - X.mean()) / X.std(),
                          batch_size=8, epochs=1, verbose=0)
    assert teacher.value_range is None and np.isfinite(history.history["loss"]).all()
