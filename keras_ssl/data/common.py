"""What kind of input a value is, and the small checks every source shares."""

import itertools
import sys
import types

import keras
import numpy as np
from keras.utils import PyDataset

from keras_ssl import checks
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


def _check_unlabeled_batch(batch, x_sample, value_range, labeled_stats,
                           name="unlabeled (first batch)"):
    checks.check_images(batch, name)
    checks.check_same_image_shape(batch.shape[1:], x_sample.shape[1:])
    _check_range_of(checks.PixelStats(batch, name), value_range, labeled_stats)


def _empty_unlabeled():
    return InputError(
        "unlabeled is empty. Pass at least one unlabeled image, or "
        "unlabeled=None for supervised training."
    )


def describe(data):
    shape = getattr(data, "shape", None)
    if shape is not None:
        return f"{type(data).__name__} of shape {tuple(shape)}"
    return type(data).__name__
