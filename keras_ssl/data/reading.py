"""`read`: fit's data arguments in, checked once; the raw sources out."""

import math
import warnings

import numpy as np
from keras.utils import PyDataset

from keras_ssl import checks
from keras_ssl.augment import split_element
from keras_ssl.checks import InputError
from keras_ssl.data.arrays import ArraySource, _labeled_arrays
from keras_ssl.data.common import (
    DEFAULT_BATCH_SIZE,
    _check_range_of,
    _check_unlabeled_batch,
    _first_of_dataset,
    _single,
    input_kind,
    is_tf_dataset,
    keras_tree_numpy,
    tf,
)
from keras_ssl.data.guard import StreamGuard
from keras_ssl.data.streams import _labeled_stream, _unlabeled_stream


class FitInputs:
    """What `read` returns: the checked, raw sources and what the model needs.

    Attributes:
        source: the raw training source: batched labeled `(x, y[, w])`, or
            `zip((labeled, unlabeled))` of such batches and unlabeled image
            batches; an `ArraySource` without TensorFlow.
        kind: what `x` was: "array", "dataset", "pydataset", "generator" or
            "zipped".
        x_sample, y_sample: the first labeled batch (numpy).
        labels: every label, when they came as an array (else None).
        stats: `checks.PixelStats` of the labeled images.
        value_range: the declared or inferred pixel range, or None when the
            data is none of the three the rule infers.
        validation_data: what `keras.Model.fit` gets as `validation_data`.
        validation_labels: the validation labels (all, or a first batch).
        class_weight: `fit`'s class weights, to check against the classes.
        guard: the `StreamGuard` of the streams, or None for arrays.
        has_unlabeled, has_unlabeled_labels: what the step will receive.
        unlabeled_images: with `unlabeled_index=True`, the checked unlabeled
            array (else None); `source` is then the labeled source alone and
            the model zips the unlabeled stream its table draws.
        unlabeled_labels, unlabeled_batch: their monitoring labels (or None)
            and the unlabeled batch size.
        unlabeled_count: the number of unlabeled images when each batch
            carries their indices (`unlabeled_index`, `index_unlabeled`),
            else None.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)


def _split_validation(x, y, sample_weight, validation_split):
    """Hold out the last fraction of the labeled arrays, as Keras does."""
    count = len(x)
    split_at = math.floor(count * (1.0 - validation_split))
    if split_at < 1 or split_at >= count:
        raise InputError(
            f"fit(validation_split={validation_split}) of {count} labeled images "
            f"leaves {split_at} for training and {count - split_at} for validation; "
            "both need at least one. Use a larger labeled set or another split."
        )
    train = (x[:split_at], y[:split_at],
             None if sample_weight is None else sample_weight[:split_at])
    val = (x[split_at:], y[split_at:])
    if sample_weight is not None:
        val = val + (sample_weight[split_at:],)
    return train, val


def _declared_or_inferred_range(stats, declared):
    if declared is not None:
        checks.check_value_range(stats, declared)
        return tuple(declared)
    return checks.infer_value_range(stats)


def read(x, y=None, *, sample_weight=None, batch_size=None, unlabeled=None,
         unlabeled_labels=None, shuffle=True, class_weight=None, steps_per_epoch=None,
         epochs=1, initial_epoch=0, validation_split=0.0, validation_data=None,
         validation_steps=None, validation_freq=1, unlabeled_ratio=7, value_range=None,
         array_feed=False, unlabeled_index=False, index_unlabeled=False):
    """Read and check `fit`'s data arguments; build the raw sources.

    Args:
        The arguments of `SemiSupervisedModel.fit`, plus:
        unlabeled_ratio: unlabeled images per labeled image in a batch.
        value_range: the declared range (or the one the model was trained
            with), or None to infer it.
        array_feed: build an `ArraySource` (numpy, no TensorFlow) instead of
            `tf.data` sources.
        unlabeled_index: the unlabeled images are read for a pseudo-label
            table: they must be an array, and no unlabeled stream is built
            (the table draws it).
        index_unlabeled: when the unlabeled images are an array, each
            unlabeled batch carries the images' indices (`"unlabeled_index"`)
            for an algorithm's per-image state (`FlexMatch`'s memory).

    Returns:
        A `FitInputs`. Raises `InputError` for anything it cannot train on;
        nothing outside the returned object changes.
    """
    checks.check_fit_counts(batch_size, epochs, initial_epoch, steps_per_epoch,
                            validation_split, validation_steps, validation_freq)
    if x is None:
        raise InputError(
            "fit() needs labeled images: pass fit(x_labeled, y_labeled, "
            "unlabeled=x_unlabeled)."
        )
    x = _single(x, "x")
    y = _single(y, "y") if y is not None else None
    kind = input_kind(x, "x")
    _check_unlabeled_arguments(kind, unlabeled, unlabeled_labels)
    if class_weight is not None:
        checks.check_class_weight(class_weight)

    if validation_split and validation_data is None:
        if kind != "array":
            raise InputError(
                f"fit(validation_split=...) needs array inputs; x is a {kind}. Pass "
                "validation_data= instead (for a folder: image_dataset_from_directory("
                "..., validation_split=0.2, subset='validation'))."
            )
    elif validation_split:
        warnings.warn(
            "fit() received both validation_split and validation_data; as in Keras, "
            "validation_data is used and validation_split ignored.",
            stacklevel=3,
        )
        validation_split = 0.0

    guard = None
    labels = None
    if kind == "array":
        x = np.asarray(x)
        if x.ndim == 0 or len(x) == 0:
            raise InputError(
                "fit(x=...) holds no labeled images. keras-ssl needs at least one "
                "labeled image per class; pass fit(x_labeled, y_labeled, unlabeled=...)."
            )
        checks.check_images(x, "x (labeled images)")
        if y is None:
            raise InputError(
                "fit() received labeled images x but y=None. keras-ssl needs labels "
                "for x: fit(x_labeled, y_labeled, unlabeled=x_unlabeled). Images "
                "without labels go in unlabeled=."
            )
        if not checks.is_array(y) and not isinstance(y, (list, tuple)):
            raise InputError(
                f"fit(y=...) must be an array of labels for array x; received "
                f"{type(y).__name__}."
            )
        y = np.asarray(y)
        checks.check_label_array(y, len(x))
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight)
            checks.check_sample_weight(sample_weight, len(x))
        if validation_split:
            (x, y, sample_weight), validation_data = _split_validation(
                x, y, sample_weight, validation_split
            )
        batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        checks.warn_batch_larger_than_set(batch_size, len(x))
        labels = y
        x_sample, y_sample = x[:batch_size], y[:batch_size]
        stats = checks.PixelStats(x, "x (labeled images)")
        source = None if array_feed else _labeled_arrays(
            x, y, sample_weight, batch_size, shuffle, class_weight, steps_per_epoch
        )
    else:
        if y is not None:
            raise InputError(
                f"fit(y=...) was given with x as a {kind}: the {kind} must yield "
                "(images, labels) batches itself. Pass y=None."
            )
        if sample_weight is not None:
            raise InputError(
                f"fit(sample_weight=...) was given with x as a {kind}: yield "
                "(images, labels, sample_weights) from it instead."
            )
        if array_feed:
            raise InputError(
                "TensorFlow is not installed, so keras-ssl reads numpy arrays only; "
                f"fit(x=...) is a {kind}. Pass numpy arrays, or install tensorflow."
            )
        source, first = _labeled_stream(x, kind, class_weight, steps_per_epoch)
        if kind == "zipped":
            first, first_unlabeled = first
        x_sample, rest = split_element(first)
        if not rest:
            raise InputError(
                "The labeled data has no labels (it yields images only). Pass "
                "fit(x_labeled, y_labeled, unlabeled=...) or a dataset of "
                "(images, labels) batches."
            )
        y_sample = rest[0]
        checks.check_images(x_sample, "x (labeled images, first batch)")
        checks.check_label_array(y_sample, len(x_sample), "y (first batch)")
        stats = checks.PixelStats(x_sample, "x (labeled images, first batch)")
    x_sample = np.asarray(x_sample)
    y_sample = np.asarray(y_sample)

    value_range = _declared_or_inferred_range(stats, value_range)
    if kind != "array" and not array_feed:  # streams are checked on their first batch
        guard = StreamGuard(value_range)

    u_batch = unlabeled_ratio * len(x_sample)
    stream = None
    if kind == "zipped":
        batch = checks.numpy(first_unlabeled)
        if batch.ndim == x_sample.ndim - 1:
            batch = batch[None]
        _check_unlabeled_batch(batch, x_sample, value_range, stats)
        source = source.map(
            lambda lab, unl: (guard.labeled_batch(*lab), guard.unlabeled_batch(unl)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    elif unlabeled is not None:
        if unlabeled_index and input_kind(unlabeled, "unlabeled") != "array":
            raise InputError(
                "This algorithm keeps a pseudo-label for every unlabeled image, so "
                "fit(unlabeled=...) must be a numpy array of images; received a "
                f"{input_kind(unlabeled, 'unlabeled')}. Read the images into an array "
                "first (e.g. np.concatenate(list(dataset.as_numpy_iterator()))), or "
                "use an algorithm without a table such as keras_ssl.FixMatch."
            )
        stream, guard = _unlabeled_stream(
            unlabeled, unlabeled_labels, x_sample, value_range, stats, u_batch,
            guard, array_feed, unlabeled_index, index_unlabeled,
        )  # None with unlabeled_index: the model's table draws the batches
    if kind in ("dataset", "pydataset", "generator"):
        source = source.map(guard.labeled_batch, num_parallel_calls=tf.data.AUTOTUNE)

    validation_data, validation_labels = _read_validation(
        validation_data, x_sample, value_range, stats
    )
    if array_feed:
        source = ArraySource(x, y, sample_weight, batch_size, unlabeled, u_batch,
                             unlabeled_labels, shuffle, steps_per_epoch,
                             with_index=unlabeled_index or index_unlabeled)
    elif stream is not None:
        source = tf.data.Dataset.zip((source, stream))
    # With unlabeled_index the unlabeled stream is made by the model from its
    # pseudo-label table (`PseudoLabelTable.stream`) and zipped there.
    return FitInputs(
        source=source, kind=kind,
        x_sample=x_sample, y_sample=y_sample, labels=labels, stats=stats,
        value_range=value_range, validation_data=validation_data,
        validation_labels=validation_labels, class_weight=class_weight, guard=guard,
        has_unlabeled=kind == "zipped" or unlabeled is not None,
        has_unlabeled_labels=unlabeled_labels is not None,
        unlabeled_images=(np.asarray(unlabeled) if unlabeled_index and unlabeled is not None
                          else None),
        unlabeled_labels=unlabeled_labels, unlabeled_batch=u_batch,
        unlabeled_count=(len(unlabeled) if (unlabeled_index or index_unlabeled)
                         and unlabeled is not None and checks.is_array(unlabeled) else None),
    )


def _check_unlabeled_arguments(kind, unlabeled, unlabeled_labels):
    if kind == "zipped" and unlabeled is not None:
        raise InputError(
            "fit() received a zipped (labeled, unlabeled) dataset as `x` and "
            "also `unlabeled=`. Pass the unlabeled images one way only."
        )
    if unlabeled_labels is not None:
        if unlabeled is None:
            raise InputError(
                "fit(unlabeled_labels=...) was given without unlabeled=. Pass the "
                "unlabeled images as unlabeled= (numpy, tf.data or PyDataset) "
                "next to their ground truth; zipped datasets do not support "
                "unlabeled_labels."
            )
        if not checks.is_array(unlabeled_labels) and not isinstance(
            unlabeled_labels, (list, tuple)
        ):
            raise InputError(
                "fit(unlabeled_labels=...) must be a numpy array of integer "
                f"classes; received {type(unlabeled_labels).__name__}."
            )


def _read_validation(validation_data, x_sample, value_range, labeled_stats):
    """Check validation data like training data: images, range, labels."""
    if validation_data is None:
        return None, None
    name = "validation_data"
    spec_name = "fit(validation_data=...)"
    if isinstance(validation_data, (tuple, list)) and not checks.is_array(validation_data):
        if len(validation_data) not in (2, 3):
            raise InputError(
                f"fit(validation_data=...) must be (x_val, y_val), (x_val, y_val, "
                f"sample_weight_val) or a dataset; received a "
                f"{type(validation_data).__name__} of {len(validation_data)} items."
            )
        val_x = _single(validation_data[0], "validation x")
        val_y = _single(validation_data[1], "validation y")
        if val_y is None:
            raise InputError(
                "fit(validation_data=...) has no labels (y_val is None); pass "
                "(x_val, y_val)."
            )
        val_x, val_y = np.asarray(val_x), np.asarray(val_y)
        if len(val_x) == 0:
            raise InputError("fit(validation_data=...) holds no images.")
        images, labels = val_x, val_y
        checks.check_label_array(val_y, len(val_x), "validation_data labels")
        validation_data = (val_x, val_y) + tuple(validation_data[2:])
    elif is_tf_dataset(validation_data) or isinstance(validation_data, PyDataset):
        if is_tf_dataset(validation_data):
            checks.check_labeled_spec(validation_data.element_spec, spec_name)
            first = _first_of_dataset(validation_data)
        else:
            first = keras_tree_numpy(validation_data[0]) if len(validation_data) else None
        if first is None:
            raise InputError(f"{spec_name} yields nothing.")
        images, rest = split_element(first)
        if not rest:
            raise InputError(
                f"{spec_name} yields images only; validation needs (images, labels)."
            )
        labels = rest[0]
        name = "validation_data (first batch)"
    else:
        raise InputError(
            "fit(validation_data=...) must be (x_val, y_val), a tf.data.Dataset or a "
            f"keras.utils.PyDataset; received {type(validation_data).__name__}."
        )
    images = checks.numpy(images)
    checks.check_images(images, name)
    checks.check_same_image_shape(images.shape[1:], x_sample.shape[1:], name)
    _check_range_of(checks.PixelStats(images, name), value_range, labeled_stats)
    return validation_data, checks.numpy(labels)
