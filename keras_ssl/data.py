"""The zipped labeled/unlabeled `tf.data` source and its input checks.

Data flows one way: user arrays or datasets -> one labeled stream (batched by
Keras's own data adapters) zipped with one unlabeled stream (shuffled,
repeated forever, batched at `unlabeled_ratio * batch_size`) -> augmented
views mapped in parallel -> prefetch -> `SemiSupervisedModel.train_step`.

With `augment_on_device=True` the views are made in the step instead, and
the source yields the raw batches; `ArraySource` is that source from numpy
arrays when TensorFlow is not installed (TensorFlow is imported lazily).
"""

import math
import sys

import numpy as np
from keras.src.trainers.data_adapters import get_data_adapter
from keras.utils import PyDataset

from keras_ssl import validation

LABELED = "labeled"
UNLABELED_LABELS = "unlabeled_labels"
# The raw unlabeled batch, when the views are made in the step
# (`SemiSupervisedModel(augment_on_device=True)`).
UNLABELED = "unlabeled"


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
    if not is_tf_dataset(dataset):
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
    if is_tf_dataset(unlabeled):
        spec = unlabeled.element_spec
        validation.check_unlabeled_spec(spec, image_rank)
        if len(spec.shape) == image_rank:  # batched
            unlabeled = unlabeled.unbatch()
        return unlabeled
    if _is_py_dataset(unlabeled):
        adapter = get_data_adapter(unlabeled)
        dataset = adapter.get_tf_dataset()
        spec = dataset.element_spec
        if isinstance(spec, tuple) and len(spec) == 1:
            # Keras's adapter wraps a PyDataset that yields only `x` as `(x,)`.
            dataset = dataset.map(lambda x: x)
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


def attach_views(dataset, views, labeled_view=None, zipped=True, on_device=False):
    """Map every augmented view over a (zipped) dataset, in parallel.

    Args:
        dataset: `zip((labeled, unlabeled))` when `zipped`, where labeled
            batches are `x` or `(x, y[, sample_weight])` and unlabeled batches
            are images (or `(images, labels)` for monitoring); else a labeled
            dataset alone (supervised training).
        views: dict `{name: callable}` producing each unlabeled view.
        labeled_view: callable applied to labeled images, or None.
        zipped: whether `dataset` carries an unlabeled stream.
        on_device: make no view here: yield the raw float32 batches as
            `{"labeled": x, "unlabeled": u}`; the training step augments them.

    Returns:
        A dataset of `({"labeled": x, view: ..., ...}, y[, sample_weight])`.
    """
    if on_device:
        views, labeled_view = {UNLABELED: _as_float}, None

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
                inputs[name] = view(unl) if on_device else view(unl, training=True)
            return (inputs,) + rest

    autotune = tf.data.AUTOTUNE
    return dataset.map(combine, num_parallel_calls=autotune).prefetch(autotune)


class ArraySource(PyDataset):
    """The labeled/unlabeled feed from numpy arrays, without TensorFlow.

    Used by `SemiSupervisedModel(augment_on_device=True)` when TensorFlow is
    not installed (e.g. a JAX-only GPU machine). Batch `i` is
    `({"labeled": x, "unlabeled": u}, y[, sample_weight])` in float32: the
    labeled batch in (shuffled) order, the last one partial as in
    `keras.Model.fit`, and `unlabeled_batch` unlabeled images drawn from an
    endless stream that reshuffles after every pass. The step makes the
    views.

    Args:
        x, y, sample_weight: labeled numpy arrays (sample_weight optional).
        batch_size: labeled images per batch.
        unlabeled: unlabeled images (numpy), or None for supervised batches.
        unlabeled_batch: unlabeled images per batch.
        unlabeled_labels: optional ground truth of `unlabeled`, for monitoring.
        shuffle: reshuffle the labeled data every epoch.
        steps_per_epoch: when given, the labeled data repeats endlessly.
        seed: seed of the shuffles.
    """

    def __init__(self, x, y, sample_weight=None, batch_size=32, unlabeled=None,
                 unlabeled_batch=None, unlabeled_labels=None, shuffle=True,
                 steps_per_epoch=None, seed=None):
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
        self._rng = np.random.default_rng(seed)
        self._order = self._permutation(len(self.x), shuffle)
        self._stream = np.zeros((0,), "int64")

    def _permutation(self, n, shuffle):
        return self._rng.permutation(n) if shuffle else np.arange(n)

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    @property
    def num_batches(self):
        return None if self.steps_per_epoch is not None else len(self)

    def _next_unlabeled(self):
        while len(self._stream) < self.unlabeled_batch:
            self._stream = np.concatenate(
                [self._stream, self._permutation(len(self.unlabeled), True)]
            )
        index, self._stream = (
            self._stream[: self.unlabeled_batch], self._stream[self.unlabeled_batch:]
        )
        return index

    def __getitem__(self, index):
        index = int(index) % len(self)
        if index == 0 and self.steps_per_epoch is not None:
            self._order = self._permutation(len(self.x), self.shuffle)
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        inputs = {LABELED: self.x[rows].astype("float32")}
        if self.unlabeled is not None:
            picked = self._next_unlabeled()
            inputs[UNLABELED] = self.unlabeled[picked].astype("float32")
            if self.unlabeled_labels is not None:
                inputs[UNLABELED_LABELS] = self.unlabeled_labels[picked]
        batch = (inputs, self.y[rows])
        if self.sample_weight is not None:
            batch = batch + (self.sample_weight[rows],)
        return batch

    def on_epoch_end(self):
        if self.steps_per_epoch is None:
            self._order = self._permutation(len(self.x), self.shuffle)
