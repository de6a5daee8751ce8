"""The zipped labeled/unlabeled `tf.data` source and its input checks.

Data flows one way: user arrays or datasets -> one labeled stream (batched by
Keras's own data adapters) zipped with one unlabeled stream (shuffled,
repeated forever, batched at `unlabeled_ratio * batch_size`) -> augmented
views mapped in parallel -> prefetch -> `SemiSupervisedModel.train_step`.
"""

import numpy as np
import tensorflow as tf
from keras.src.trainers.data_adapters import get_data_adapter

from keras_ssl import validation

AUTOTUNE = tf.data.AUTOTUNE
LABELED = "labeled"
UNLABELED_LABELS = "unlabeled_labels"


def infer_value_range(images):
    """Guess the pixel range of a batch: (0, 255), (0, 1) or (-1, 1)."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return (0.0, 255.0)
    finite = images[np.isfinite(images)]
    if finite.size == 0:
        return (0.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    if high > 1.5:
        return (0.0, 255.0)
    if low < -0.05:
        return (-1.0, 1.0)
    return (0.0, 1.0)


def is_zipped(dataset):
    """True for `tf.data.Dataset.zip((labeled, unlabeled))` as fit's `x`."""
    if not isinstance(dataset, tf.data.Dataset):
        return False
    spec = dataset.element_spec
    return (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], tuple)
        and isinstance(spec[1], tf.TensorSpec)
    )


def labeled_dataset(x, y, sample_weight, batch_size, shuffle, class_weight,
                    steps_per_epoch):
    """Batched `(x, y[, sample_weight])` through Keras's own data adapters."""
    adapter = get_data_adapter(
        x, y, sample_weight=sample_weight, batch_size=batch_size,
        steps_per_epoch=steps_per_epoch, shuffle=shuffle, class_weight=class_weight,
    )
    dataset = adapter.get_tf_dataset()
    if adapter.num_batches is not None and steps_per_epoch is None:
        # Keras's array adapter hides the length; restore it so that fit
        # knows the epoch length (and the progress bar its total).
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(adapter.num_batches))
    if steps_per_epoch is not None:
        # The labeled set may be smaller than the number of steps asked for:
        # repeat it (the unlabeled stream is infinite anyway).
        dataset = dataset.repeat()
    return dataset


def _unbatched_images(unlabeled, image_rank):
    """Any supported unlabeled input as a dataset of single images."""
    if isinstance(unlabeled, tf.data.Dataset):
        spec = unlabeled.element_spec
        validation.check_unlabeled_spec(spec, image_rank)
        if len(spec.shape) == image_rank:  # batched
            unlabeled = unlabeled.unbatch()
        return unlabeled
    if _is_py_dataset(unlabeled):
        adapter = get_data_adapter(unlabeled)
        dataset = adapter.get_tf_dataset()
        validation.check_unlabeled_spec(dataset.element_spec, image_rank)
        return dataset.unbatch()
    array = np.asarray(unlabeled)
    return tf.data.Dataset.from_tensor_slices(array)


def _is_py_dataset(obj):
    from keras.utils import PyDataset

    return isinstance(obj, PyDataset)


def unlabeled_dataset(unlabeled, batch_size, image_rank, labels=None,
                      shuffle_buffer=10000, seed=None):
    """Unlabeled images: shuffled, repeated forever, batched, dropping remainders."""
    images = _unbatched_images(unlabeled, image_rank)
    if labels is not None:
        labels = tf.data.Dataset.from_tensor_slices(np.asarray(labels).reshape(-1))
        images = tf.data.Dataset.zip((images, labels))
    dataset = images.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return dataset.repeat().batch(batch_size, drop_remainder=True)


def _split(element):
    if isinstance(element, (tuple, list)):
        x = element[0]
        rest = tuple(element[1:])
    else:
        x, rest = element, ()
    return x, rest


def _as_float(images):
    return tf.cast(images, "float32")


def attach_views(dataset, views, labeled_view=None, zipped=True):
    """Map every augmented view over a (zipped) dataset, in parallel.

    Args:
        dataset: `zip((labeled, unlabeled))` when `zipped`, where labeled
            batches are `x` or `(x, y[, sample_weight])` and unlabeled batches
            are images (or `(images, labels)` for monitoring); else a labeled
            dataset alone (supervised training).
        views: dict `{name: callable}` producing each unlabeled view.
        labeled_view: callable applied to labeled images, or None.
        zipped: whether `dataset` carries an unlabeled stream.

    Returns:
        A dataset of `({"labeled": x, view: ..., ...}, y[, sample_weight])`.
    """

    def augment_labeled(x):
        x = _as_float(x)
        return labeled_view(x, training=True) if labeled_view is not None else x

    if not zipped:

        def combine(*element):
            x, rest = _split(element if len(element) > 1 else element[0])
            return ({LABELED: augment_labeled(x)},) + rest

    else:

        def combine(lab, unl):
            x, rest = _split(lab)
            inputs = {LABELED: augment_labeled(x)}
            if isinstance(unl, (tuple, list)):
                unl, inputs[UNLABELED_LABELS] = unl
            unl = _as_float(unl)
            for name, view in views.items():
                inputs[name] = view(unl, training=True)
            return (inputs,) + rest

    return dataset.map(combine, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
