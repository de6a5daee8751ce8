"""PerImageRandAugment: a different pair of operations for every image."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_ssl.augment import PerImageRandAugment, strong_augmentation


def _same_image_batch(n=48):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3)).astype("float32")
    return np.repeat(image[None], n, axis=0), image


def test_per_image_ops_in_tf_data_differ_and_stay_in_range():
    batch, image = _same_image_batch()
    aug = PerImageRandAugment(value_range=(0, 255), seed=1)
    ds = tf.data.Dataset.from_tensors(batch).map(lambda b: aug(b, training=True))
    out = next(iter(ds)).numpy()
    assert out.shape == batch.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    # One image repeated: a batch-wide choice would give <= 1 distinct result
    # per operation pair; per-image choices give many.
    distinct = {round(float(v), 2) for v in np.abs(out - image).mean(axis=(1, 2, 3))}
    assert len(distinct) > 20


def test_strong_view_eager_and_unbatched():
    batch, image = _same_image_batch(8)
    strong = strong_augmentation(value_range=(0, 255), seed=2)
    out = np.asarray(strong(batch, training=True))
    assert out.shape == batch.shape and np.isfinite(out).all()
    single = np.asarray(PerImageRandAugment(value_range=(0, 255))(image, training=True))
    assert single.shape == image.shape
    inference = np.asarray(PerImageRandAugment(value_range=(0, 255))(batch, training=False))
    np.testing.assert_array_equal(inference, batch)


def test_equalization_histogram_is_kerass_under_every_backend_choice(monkeypatch):
    """The strong view's Equalization counts with one `bincount` in TensorFlow
    code (tf.data maps), where Keras unrolls a 256-step loop when the global
    backend is JAX: the same histogram and the same images."""
    import keras
    from keras.src import backend as keras_backend

    from keras_ssl.augment import _Equalization

    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3)).astype("float32")
    ours = _Equalization(value_range=(0, 255))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(ours(images)),
        keras.ops.convert_to_numpy(keras.layers.Equalization(value_range=(0, 255))(images)))
    assert isinstance(PerImageRandAugment(value_range=(0, 255)).equalization, _Equalization)
    if keras.backend.backend() != "tensorflow":
        return
    channel = images[..., 0]
    histogram = keras.ops.convert_to_numpy(ours._custom_histogram_fixed_width(
        channel, (0, 255), 256))
    assert histogram.sum() == channel.size
    monkeypatch.setattr(keras_backend, "backend", lambda: "jax")  # Keras's loop
    unrolled = keras.layers.Equalization._custom_histogram_fixed_width(
        ours, channel, (0, 255), 256)
    np.testing.assert_array_equal(histogram, keras.ops.convert_to_numpy(unrolled))
