"""Streams (`tf.data`, `PyDataset`, generators) as labeled and unlabeled sources."""

import numpy as np

from keras_ssl import checks
from keras_ssl.checks import InputError
from keras_ssl.data.common import (
    _check_range_of,
    _check_unlabeled_batch,
    _empty_unlabeled,
    _first_of_dataset,
    _length,
    _peek_generator,
    input_kind,
    keras_tree_numpy,
    tf,
)
from keras_ssl.data.guard import StreamGuard


def _labeled_stream(x, kind, class_weight, steps_per_epoch):
    """A labeled (or zipped) stream as a batched `tf.data` source, and its first element."""
    from keras_ssl import _compat

    if kind in ("dataset", "zipped"):
        if int(x.cardinality()) == 0:
            raise InputError(
                "fit(x=...) is an empty dataset. Pass labeled (images, labels) "
                "batches."
            )
        spec = x.element_spec
        checks.check_labeled_spec(spec)
        if kind == "dataset" and isinstance(spec, tuple):
            images = spec[0]
            if isinstance(images, dict):
                x = x.map(lambda d, *rest: (next(iter(d.values())),) + rest)
                images = next(iter(images.values()))
            labels = spec[1]
            if getattr(labels, "shape", None) is not None and len(labels.shape) == 0:
                raise InputError(
                    "fit(x=...) is a dataset of single (image, label) pairs, not "
                    f"batches (image spec {images}). Batch it: dataset.batch(32)."
                )
        if kind == "zipped" and class_weight is not None:
            raise InputError(
                "fit(class_weight=...) is not supported with a zipped (labeled, "
                "unlabeled) dataset; map the weights into its labeled part as "
                "(x, y, sample_weight)."
            )
        first = _first_of_dataset(x)
        if first is None:
            raise InputError(
                "fit(x=...) is a dataset that yields nothing. Pass labeled "
                "(images, labels) batches (check filters and take())."
            )
        if kind == "zipped":
            if isinstance(x.element_spec[1], tuple):
                checks.check_labeled_spec(x.element_spec)
            source = x.repeat() if steps_per_epoch is not None else x
            return source, first
        adapter = _compat.get_data_adapter(x, class_weight=class_weight)
    elif kind == "pydataset":
        if _length(x) == 0:
            raise InputError("fit(x=...) is an empty PyDataset. Pass labeled batches.")
        first = x[0]
        if not isinstance(first, tuple):
            raise InputError(
                "fit(x=...) is a PyDataset whose batches are "
                f"{type(first).__name__}s; keras-ssl needs (images, labels) tuples "
                "from __getitem__."
            )
        first = keras_tree_numpy(first)
        adapter = _compat.get_data_adapter(x, class_weight=class_weight)
    else:  # a generator
        if class_weight is not None:
            raise InputError(
                "fit(class_weight=...) is not supported with a Python generator "
                "(as in Keras); yield (images, labels, sample_weights) instead."
            )
        first, x = _peek_generator(x, "x")
        if not isinstance(first, tuple):
            raise InputError(
                "fit(x=...) is a generator whose items are "
                f"{type(first).__name__}s; keras-ssl needs (images, labels) tuples."
            )
        first = keras_tree_numpy(first)
        adapter = _compat.get_data_adapter(x)
    dataset = adapter.get_tf_dataset()
    if steps_per_epoch is not None:
        dataset = dataset.repeat()
    return dataset, first


def _unbatched_images(unlabeled, kind, image_rank):
    """A supported unlabeled stream as a dataset of single images."""
    from keras_ssl import _compat

    if kind == "dataset":
        if len(unlabeled.element_spec.shape) == image_rank:  # batched
            unlabeled = unlabeled.unbatch()
        return unlabeled
    dataset = _compat.get_data_adapter(unlabeled).get_tf_dataset()
    spec = dataset.element_spec
    if isinstance(spec, tuple) and len(spec) == 1:
        # Keras's adapter wraps a PyDataset that yields only `x` as `(x,)`.
        dataset = dataset.map(lambda x: x)
    checks.check_unlabeled_spec(dataset.element_spec, image_rank)
    return dataset.unbatch()


def _unlabeled_stream(unlabeled, labels, x_sample, value_range, labeled_stats, u_batch,
                      guard, array_feed, with_index=False, indexed=False):
    """Check the unlabeled input; return its batched stream and the stream guard.

    Arrays are checked whole and need no guard (`guard` comes back as given);
    a stream gets one (the labeled stream's, or a new one). With `indexed`,
    an array's batches carry each image's index (`_indexed_batches`).
    """
    kind = input_kind(unlabeled, "unlabeled")
    image_rank = x_sample.ndim
    count = None
    if kind == "array":
        images = np.asarray(unlabeled)
        if images.size == 0 or len(images) == 0:
            raise _empty_unlabeled()
        checks.check_images(images, "unlabeled")
        checks.check_same_image_shape(images.shape[1:], x_sample.shape[1:])
        _check_range_of(checks.PixelStats(images, "unlabeled"), value_range, labeled_stats)
        if labels is not None:
            checks.check_unlabeled_labels(labels, len(images))
        checks.warn_small_unlabeled(len(images), u_batch)
        if array_feed:
            return None, guard
        if with_index:
            return None, guard  # checked; the pseudo-label table draws the batches
        if indexed:
            return _indexed_batches(images, labels, u_batch), guard
        dataset = tf.data.Dataset.from_tensor_slices(images)
        return _shuffled_batches(dataset, labels, u_batch), guard
    if array_feed:
        raise InputError(
            "TensorFlow is not installed, so keras-ssl reads numpy arrays only; "
            f"fit(unlabeled=...) is a {kind}. Pass a numpy array, or install tensorflow."
        )
    if kind == "dataset":
        if int(unlabeled.cardinality()) == 0:
            raise _empty_unlabeled()
        spec = unlabeled.element_spec
        checks.check_unlabeled_spec(spec, image_rank)
        checks.check_same_image_shape(tuple(spec.shape[-3:]), x_sample.shape[1:])
        batched = len(spec.shape) == image_rank
        peek = unlabeled if batched else unlabeled.batch(64)
        first = _first_of_dataset(peek)
        cardinality = int(unlabeled.cardinality())
        if labels is not None:
            if cardinality == int(tf.data.INFINITE_CARDINALITY):
                raise InputError(
                    "fit(unlabeled_labels=...) cannot be matched to an infinite "
                    "unlabeled dataset (it repeats). Pass the dataset before "
                    ".repeat(), or numpy arrays."
                )
            known = cardinality >= 0 and not batched
            count = cardinality if known else None
        if cardinality >= 0 and not batched:
            checks.warn_small_unlabeled(cardinality, u_batch)
    elif kind == "pydataset":
        if _length(unlabeled) == 0:
            raise _empty_unlabeled()
        first = unlabeled[0]
        if isinstance(first, (tuple, list, dict)):
            checks.check_unlabeled_spec(first, image_rank)
    else:  # a generator
        first, unlabeled = _peek_generator(unlabeled, "unlabeled")
        if isinstance(first, (tuple, list, dict)):
            checks.check_unlabeled_spec(first, image_rank)
        first = (first,)
        unlabeled = (item if isinstance(item, tuple) else (item,) for item in unlabeled)
    if first is None:
        raise _empty_unlabeled()
    batch = checks.numpy(first[0] if isinstance(first, tuple) else first)
    if batch.ndim == 0 or len(batch) == 0:
        raise _empty_unlabeled()
    _check_unlabeled_batch(batch, x_sample, value_range, labeled_stats)
    if labels is not None:
        checks.check_unlabeled_labels(labels, count)
    guard = guard if guard is not None else StreamGuard(value_range)
    images = _unbatched_images(unlabeled, kind, image_rank)
    return _shuffled_batches(images, labels, u_batch, guard), guard


def _shuffled_batches(images, labels, batch_size, guard=None, shuffle_buffer=10000):
    """Unlabeled images: guarded, shuffled, repeated forever, batched (full batches)."""
    if labels is not None:
        labels = tf.data.Dataset.zip(
            (images, tf.data.Dataset.from_tensor_slices(np.asarray(labels).reshape(-1)))
        )
        if guard is not None:  # drop an image and its label together
            labels = labels.filter(lambda image, label: guard.keep_unlabeled(image))
        images = labels
    elif guard is not None:
        images = images.filter(guard.keep_unlabeled)
    dataset = images.shuffle(shuffle_buffer, reshuffle_each_iteration=True)
    return dataset.repeat().batch(batch_size, drop_remainder=True)


def _indexed_batches(images, labels, batch_size, shuffle_buffer=10000):
    """Unlabeled array batches as `{"images", "index"[, "labels"]}`: shuffled,
    repeated forever, full batches; `index` is each image's row in `images`."""
    elements = {"images": images, "index": np.arange(len(images), dtype="int32")}
    if labels is not None:
        elements["labels"] = np.asarray(labels).reshape(-1)
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    dataset = dataset.shuffle(min(shuffle_buffer, len(images)), reshuffle_each_iteration=True)
    return dataset.repeat().batch(batch_size, drop_remainder=True)
