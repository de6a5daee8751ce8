"""Read and check what `fit` receives, once, and build the raw source.

Data flows one way:

    fit's arguments -> `read` (checks every value it reads with
    `keras_ssl.checks`) -> `FitInputs`: the labeled source (batched
    `(x, y[, sample_weight])`, raw pixels), the unlabeled stream (shuffled,
    repeated, batched at `unlabeled_ratio * batch_size`), the first labeled
    batch, the pixel range and the validation data
    -> `SemiSupervisedModel` prepares itself from the first batch
    -> `keras_ssl.augment.attach_views` maps the views over the source
    -> `keras.Model.fit`.

Arrays are checked whole. Streams (`tf.data`, `PyDataset`, generators) are
checked on their first batch; further down, a bad value (NaN or Inf, pixels
outside the range, a label outside the classes) is skipped: an unlabeled image
is dropped from the stream, a labeled example gets sample weight 0, and a
warning at the end of the epoch says how many (`StreamGuard`).

With `augment_on_device=True` the step makes the views, and `ArraySource`
feeds numpy arrays when TensorFlow is not installed (TensorFlow is imported
lazily).
"""

import itertools
import math
import sys
import types
import warnings

import keras
import numpy as np
from keras.utils import PyDataset

from keras_ssl import checks
from keras_ssl.augment import (
    LABELED,
    UNLABELED,
    UNLABELED_INDEX,
    UNLABELED_LABELS,
    UNLABELED_TARGETS,
    split_element,
)
from keras_ssl.checks import InputError

DEFAULT_BATCH_SIZE = 32


class _LazyTensorFlow:
    """`tensorflow`, imported on first use: keras-ssl imports without it."""

    def __getattr__(self, name):
        import tensorflow

        return getattr(tensorflow, name)


tf = _LazyTensorFlow()


def tensorflow_available():
    """Whether TensorFlow can be imported (the `tf.data` source needs it)."""
    if sys.modules.get("tensorflow") is not None:
        return True
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def is_tf_dataset(obj):
    """True for a `tf.data.Dataset`, without importing TensorFlow."""
    module = sys.modules.get("tensorflow")
    data_module = getattr(module, "data", None)
    return data_module is not None and isinstance(obj, data_module.Dataset)


def is_zipped(dataset):
    """True for `tf.data.Dataset.zip((labeled, unlabeled))` as fit's `x`."""
    if not is_tf_dataset(dataset):
        return False
    spec = dataset.element_spec
    return (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], tuple)
        and isinstance(spec[1], tf.TensorSpec)
    )


def input_kind(value, name):
    """What kind of input a labeled or unlabeled argument is."""
    if is_tf_dataset(value):
        return "zipped" if name == "x" and is_zipped(value) else "dataset"
    if isinstance(value, PyDataset):
        return "pydataset"
    if isinstance(value, types.GeneratorType):
        return "generator"
    if checks.is_array(value):
        return "array"
    if isinstance(value, (list, tuple)) and value and all(
        np.isscalar(v) or checks.is_array(v) for v in value
    ):
        return "array"
    hint = ""
    if isinstance(value, str):
        hint = (" For a folder of images use keras.utils.image_dataset_from_directory("
                "path) (labels=None for unlabeled images) and pass the dataset.")
    if name == "x":
        what = ("fit(x=...) must be a numpy array of labeled images, a tf.data.Dataset, "
                "a keras.utils.PyDataset or a Python generator of (images, labels) "
                "batches")
    else:
        what = ("unlabeled must be a numpy array of images, a tf.data.Dataset of images, "
                "a keras.utils.PyDataset or a Python generator of image batches")
    raise InputError(f"{what}; received {type(value).__name__}.{hint}")


def _single(value, what):
    """Unwrap a one-element list/tuple/dict (one model input or output)."""
    if isinstance(value, dict):
        if len(value) == 1:
            return next(iter(value.values()))
        raise InputError(
            f"fit() received {what} as a dict of {len(value)} entries "
            f"({sorted(value)}); keras-ssl trains models with one image input and one "
            "output of class scores. Pass the image array (and one label array)."
        )
    if isinstance(value, (list, tuple)) and value and all(
        checks.is_array(v) and np.ndim(v) >= 1 for v in value
    ):
        if len(value) == 1:
            return value[0]
        shapes = {np.shape(v) for v in value}
        hint = (f" If they are {len(value)} single images, stack them: np.stack(x)."
                if len(shapes) == 1 else "")
        raise InputError(
            f"fit() received {what} as a list of {len(value)} arrays, which Keras "
            "reads as several model inputs or outputs; keras-ssl trains models with "
            f"one image input and one output.{hint}"
        )
    return value


# ------------------------------------------------------------ the guard


class StreamGuard:
    """Finds bad values in streams during training, skips them and counts them.

    Streams are checked on their first batch before training; this guard
    covers the rest. An unlabeled image with NaN/Inf or values outside the
    pixel range is dropped from the stream; a labeled example with such an
    image, a NaN label or a class index outside `[0, num_classes)` keeps its
    place but gets sample weight 0 (and finite placeholder values), so that
    batches, epoch lengths and the progress bar stay as they were.
    `SkipReport` warns about what was skipped at the end of each epoch.
    """

    def __init__(self, value_range):
        self.value_range = None if value_range is None else tuple(value_range)
        self.num_classes = tf.Variable(0, dtype="int64", trainable=False)
        self.labeled = tf.Variable(0, dtype="int64", trainable=False)
        self.unlabeled = tf.Variable(0, dtype="int64", trainable=False)

    def _images_ok(self, images):
        """One bool per image of a batch (rank 4)."""
        values = tf.cast(images, "float32")
        ok = tf.reduce_all(tf.math.is_finite(values), axis=[1, 2, 3])
        if self.value_range is not None:
            low, high = self.value_range
            slack = checks.RANGE_TOLERANCE * (high - low)
            ok = ok & tf.reduce_all(
                (values >= low - slack) & (values <= high + slack), axis=[1, 2, 3]
            )
        return ok

    def keep_unlabeled(self, image):
        """Predicate for `filter` over single unlabeled images; counts the dropped."""
        ok = self._images_ok(image[None])[0]
        self.unlabeled.assign_add(tf.cast(tf.logical_not(ok), "int64"))
        return ok

    def unlabeled_batch(self, images):
        """A batch of a user's zipped stream: bad images become flat mid-range images."""
        ok = self._images_ok(images)
        self.unlabeled.assign_add(tf.reduce_sum(tf.cast(tf.logical_not(ok), "int64")))
        middle = 0.0 if self.value_range is None else sum(self.value_range) / 2.0
        flat = tf.cast(tf.fill(tf.shape(images), middle), images.dtype)
        return tf.where(ok[:, None, None, None], images, flat)

    def labeled_batch(self, x, y, sample_weight=None):
        """`(x, y, sample_weight)` with weight 0 and safe values for bad examples."""
        ok = self._images_ok(x)
        labels = tf.cast(y, "float32")
        batch = tf.shape(labels)[0]
        flat = tf.reshape(labels, (batch, -1))
        ok = ok & tf.reduce_all(tf.math.is_finite(flat), axis=1)
        if y.shape.rank == 1 or (y.shape.rank == 2 and y.shape[-1] == 1):
            classes = tf.cast(self.num_classes, "float32")
            ok = ok & (flat[:, 0] >= 0) & ((flat[:, 0] < classes) | (classes <= 0))
            ok = ok & tf.equal(flat[:, 0], tf.round(flat[:, 0]))
        self.labeled.assign_add(tf.reduce_sum(tf.cast(tf.logical_not(ok), "int64")))
        image_ok = tf.reshape(ok, (-1,) + (1,) * (x.shape.rank - 1))
        x = tf.where(image_ok, x, tf.zeros_like(x))
        label_ok = tf.reshape(ok, (-1,) + (1,) * (y.shape.rank - 1))
        y = tf.where(label_ok, y, tf.zeros_like(y))
        weight = tf.cast(ok, "float32")
        if sample_weight is not None:
            weight = tf.cast(sample_weight, "float32") * tf.reshape(
                weight, (-1,) + (1,) * (sample_weight.shape.rank - 1)
            )
        return x, y, weight

    def counts(self):
        return int(self.labeled.numpy()), int(self.unlabeled.numpy())


class SkipReport(keras.callbacks.Callback):
    """Warns at each epoch end about what a `StreamGuard` skipped in it.

    `SemiSupervisedModel.fit` adds it when a stream is guarded.

    Args:
        guard: the `StreamGuard` of the run's streams.
    """

    def __init__(self, guard):
        super().__init__()
        self.guard = guard
        self.seen = (0, 0)

    def on_epoch_end(self, epoch, logs=None):
        labeled, unlabeled = self.guard.counts()
        new = (labeled - self.seen[0], unlabeled - self.seen[1])
        self.seen = (labeled, unlabeled)
        if any(new):
            warnings.warn(
                f"keras-ssl skipped {new[0]} labeled examples and {new[1]} unlabeled "
                f"images during epoch {epoch + 1}: NaN or Inf values, pixels outside "
                f"value_range {self.guard.value_range}, or labels outside the model's "
                "classes, found in a stream after its first batch (which is checked "
                "before training). Clean the data to silence this.",
                stacklevel=2,
            )


# -------------------------------------------------------------- reading


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
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)


def _first_of_dataset(dataset):
    for element in dataset.take(1):
        return keras_tree_numpy(element)
    return None


def keras_tree_numpy(element):
    return keras.tree.map_structure(checks.numpy, element)


def _length(py_dataset):
    """`len(py_dataset)`, or None for an endless one."""
    try:
        return len(py_dataset)
    except TypeError:
        return None


def _peek_generator(generator, name):
    try:
        first = next(generator)
    except StopIteration:
        raise InputError(
            f"fit({name}=...) is a generator that yields nothing. Pass a generator "
            "of batches (or a fresh one if it was already consumed)."
        ) from None
    return first, (item for item in itertools.chain([first], generator))


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


def _check_range_of(stats, value_range, labeled_stats):
    """Other images (unlabeled, validation) must be in the labeled images' range."""
    if value_range is not None:
        checks.check_value_range(stats, value_range)
        return
    mine, theirs = checks.infer_value_range(stats), checks.infer_value_range(labeled_stats)
    if mine is not None and mine != theirs:
        raise InputError(
            f"{stats.name} has values in {stats!r}, which look like the range "
            f"{mine}, but the labeled images x have values in {labeled_stats!r}. "
            "Give every input the same pixel range (and preprocessing)."
        )


def read(x, y=None, *, sample_weight=None, batch_size=None, unlabeled=None,
         unlabeled_labels=None, shuffle=True, class_weight=None, steps_per_epoch=None,
         epochs=1, initial_epoch=0, validation_split=0.0, validation_data=None,
         validation_steps=None, validation_freq=1, unlabeled_ratio=7, value_range=None,
         array_feed=False, unlabeled_index=False):
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
            guard, array_feed, unlabeled_index,
        )  # None with unlabeled_index: the model's table draws the batches
    if kind in ("dataset", "pydataset", "generator"):
        source = source.map(guard.labeled_batch, num_parallel_calls=tf.data.AUTOTUNE)

    validation_data, validation_labels = _read_validation(
        validation_data, x_sample, value_range, stats
    )
    if array_feed:
        source = ArraySource(x, y, sample_weight, batch_size, unlabeled, u_batch,
                             unlabeled_labels, shuffle, steps_per_epoch,
                             with_index=unlabeled_index)
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


def _labeled_arrays(x, y, sample_weight, batch_size, shuffle, class_weight,
                    steps_per_epoch):
    """Batched `(x, y[, sample_weight])` through Keras's own data adapters."""
    from keras_ssl import _compat

    adapter = _compat.get_data_adapter(
        x, y, sample_weight=sample_weight, batch_size=batch_size,
        steps_per_epoch=steps_per_epoch, shuffle=shuffle, class_weight=class_weight,
    )
    dataset = adapter.get_tf_dataset()
    full = _full_batch_size(len(x), batch_size)
    if len(x) % full:
        # Full batches only: the labeled images stream on into the next
        # shuffled pass instead of ending each pass on a partial batch. A
        # partial batch has a new shape (a retrace; on JAX or with XLA a
        # recompile of the whole step, a minute for an SSL step with views
        # on a GPU) and pairs a few labeled images with a full unlabeled one.
        dataset = dataset.repeat().unbatch().batch(full, drop_remainder=True)
        if steps_per_epoch is None:  # an epoch: every image once, then a fill
            dataset = dataset.take(adapter.num_batches)
    elif steps_per_epoch is not None:
        # The labeled set may be smaller than the number of steps asked for:
        # repeat it (the unlabeled stream is infinite anyway).
        dataset = dataset.repeat()
    if adapter.num_batches is not None and steps_per_epoch is None:
        # Keras's array adapter hides the length; restore it so that fit
        # knows the epoch length (and the progress bar its total).
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(adapter.num_batches))
    return dataset


def _full_batch_size(num_images, batch_size):
    """The labeled batch of every training step: `batch_size`, or all images if fewer."""
    return max(1, min(int(batch_size), int(num_images)))


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


def _check_unlabeled_batch(batch, x_sample, value_range, labeled_stats,
                           name="unlabeled (first batch)"):
    checks.check_images(batch, name)
    checks.check_same_image_shape(batch.shape[1:], x_sample.shape[1:])
    _check_range_of(checks.PixelStats(batch, name), value_range, labeled_stats)


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
                      guard, array_feed, with_index=False):
    """Check the unlabeled input; return its batched stream and the stream guard.

    Arrays are checked whole and need no guard (`guard` comes back as given);
    a stream gets one (the labeled stream's, or a new one).
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


def _empty_unlabeled():
    return InputError(
        "unlabeled is empty. Pass at least one unlabeled image, or "
        "unlabeled=None for supervised training."
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


class ArraySource(PyDataset):
    """The labeled/unlabeled feed from numpy arrays, without TensorFlow.

    Used by `SemiSupervisedModel(augment_on_device=True)` when TensorFlow is
    not installed (e.g. a JAX-only GPU machine). Batch `i` is
    `({"labeled": x, "unlabeled": u}, y[, sample_weight])` in float32: the
    labeled batch in (shuffled) order, and `unlabeled_batch` unlabeled images
    drawn from an endless stream that reshuffles after every pass. Every
    labeled batch is full (`batch_size`, or all the images if fewer): an
    epoch (without `steps_per_epoch`) shows every labeled image once and fills
    its last batch from the next shuffle; with `steps_per_epoch` the labeled
    images stream on across passes. A partial batch would have a new shape:
    a recompile of the step under `jax.jit`. The step makes the views.

    Args:
        x, y, sample_weight: labeled numpy arrays (sample_weight optional).
        batch_size: labeled images per batch.
        unlabeled: unlabeled images (numpy), or None for supervised batches.
        unlabeled_batch: unlabeled images per batch.
        unlabeled_labels: optional ground truth of `unlabeled`, for monitoring.
        shuffle: reshuffle the labeled data every epoch.
        steps_per_epoch: when given, the labeled data repeats endlessly.
        seed: seed of the shuffles.
        with_index: unlabeled batches also carry the images' indices.
        table: a `PseudoLabelTable` that draws the unlabeled batches and
            their `"unlabeled_targets"` (set by the model).
    """

    def __init__(self, x, y, sample_weight=None, batch_size=32, unlabeled=None,
                 unlabeled_batch=None, unlabeled_labels=None, shuffle=True,
                 steps_per_epoch=None, seed=None, with_index=False, table=None):
        super().__init__()
        self.x, self.y = np.asarray(x), np.asarray(y)
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight)
        self.batch_size = int(batch_size)
        self.unlabeled = None if unlabeled is None else np.asarray(unlabeled)
        self.unlabeled_labels = (
            None if unlabeled_labels is None else np.asarray(unlabeled_labels).reshape(-1)
        )
        self.unlabeled_batch = int(unlabeled_batch or 0)
        self.shuffle = shuffle
        self.steps_per_epoch = steps_per_epoch
        self.with_index = bool(with_index)
        self.table = table
        self._rng = np.random.default_rng(seed)
        self._full = _full_batch_size(len(self.x), self.batch_size)
        self._labeled = np.zeros((0,), "int64")
        self._stream = np.zeros((0,), "int64")

    def _permutation(self, n, shuffle):
        return self._rng.permutation(n) if shuffle else np.arange(n)

    def __len__(self):
        return math.ceil(len(self.x) / self._full)

    def _draw(self, stream, size, n, shuffle):
        """The first `size` indices of `stream` (extended by passes over `n`), and the rest."""
        while len(stream) < size:
            stream = np.concatenate([stream, self._permutation(n, shuffle)])
        return stream[:size], stream[size:]

    @property
    def num_batches(self):
        return None if self.steps_per_epoch is not None else len(self)

    def __getitem__(self, index):
        index = int(index) % len(self)
        if index == 0 and self.steps_per_epoch is None:
            self._labeled = self._permutation(len(self.x), self.shuffle)  # a new pass
        rows, self._labeled = self._draw(self._labeled, self._full, len(self.x), self.shuffle)
        inputs = {LABELED: self.x[rows].astype("float32")}
        if self.unlabeled is not None:
            if self.table is None:
                picked, self._stream = self._draw(
                    self._stream, self.unlabeled_batch, len(self.unlabeled), True)
            else:
                picked = self.table.draw(self.unlabeled_batch)
            inputs[UNLABELED] = self.unlabeled[picked].astype("float32")
            if self.unlabeled_labels is not None:
                inputs[UNLABELED_LABELS] = self.unlabeled_labels[picked]
            if self.with_index:
                inputs[UNLABELED_INDEX] = picked.astype("int32")
                if self.table is not None:
                    inputs[UNLABELED_TARGETS] = self.table.lookup(picked)
        batch = (inputs, self.y[rows])
        if self.sample_weight is not None:
            batch = batch + (self.sample_weight[rows],)
        return batch


# ------------------------------------------------ plain batch iteration


def describe(data):
    shape = getattr(data, "shape", None)
    if shape is not None:
        return f"{type(data).__name__} of shape {tuple(shape)}"
    return type(data).__name__


def _first(element):
    if isinstance(element, (tuple, list)):
        return element[0]
    return element


def _as_input(x):
    if isinstance(x, dict):
        return {k: _as_input(v) for k, v in x.items()}
    x = np.asarray(x)  # numpy, tf.Tensor, jax.Array, CPU torch.Tensor
    if np.issubdtype(x.dtype, np.floating) and x.dtype != np.float32:
        x = x.astype(np.float32)
    return x


def _is_array(x):
    return isinstance(x, np.ndarray) or (
        hasattr(x, "shape") and hasattr(x, "__array__") and not _is_dataset(x)
    )


def _is_dataset(x):
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover - tensorflow is a dependency
        return False
    return isinstance(x, tf.data.Dataset)


def iterate_batches(data, steps, batch_size, seed=0):
    """Yield up to `steps` input batches (numpy) from any supported `data`."""
    if isinstance(data, tuple) and data and (_is_array(data[0]) or isinstance(data[0], dict)):
        data = data[0]
    if isinstance(data, dict) or _is_array(data):
        yield from _array_batches(data, steps, batch_size, seed)
        return
    if _is_dataset(data):
        cardinality = int(data.cardinality())
        if steps is None and cardinality < 0 and cardinality != -2:  # infinite
            raise ValueError(
                "BatchNorm warm-up received an infinite tf.data.Dataset as `data` "
                "and steps=None; pass steps=N (e.g. steps=50)."
            )
        dataset = data if steps is None else data.repeat().take(int(steps))
        for element in dataset:
            yield _as_input(_first(element))
        return
    if isinstance(data, keras.utils.PyDataset):
        n = len(data)
        total = n if steps is None else int(steps)
        for i in range(total):
            yield _as_input(_first(data[i % n]))
        return
    if hasattr(data, "__iter__") and not isinstance(data, (str, bytes)):
        for i, element in enumerate(data):
            if steps is not None and i >= int(steps):
                break
            yield _as_input(_first(element))
        return
    raise TypeError(
        "BatchNorm warm-up `data` must be images: a numpy array, an (x, y) tuple, "
        f"a batched tf.data.Dataset, a keras.utils.PyDataset or an iterable of "
        f"batches; received {describe(data)}."
    )


def _array_batches(data, steps, batch_size, seed):
    arrays = data if isinstance(data, dict) else {None: data}
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    n = len(next(iter(arrays.values())))
    if n == 0:
        return
    size = min(batch_size, n)
    per_pass = max(n // size, 1)
    total = per_pass if steps is None else int(steps)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    position = 0
    for _ in range(total):
        if position + size > n:
            order, position = rng.permutation(n), 0
        index = np.sort(order[position:position + size])
        position += size
        batch = {k: _as_input(v[index]) for k, v in arrays.items()}
        yield batch.get(None, batch)
