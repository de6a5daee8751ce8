"""Numpy arrays as the labeled source: through Keras's adapters, or `ArraySource`."""

import math

import numpy as np
from keras.utils import PyDataset

from keras_ssl.augment import (
    LABELED,
    UNLABELED,
    UNLABELED_INDEX,
    UNLABELED_LABELS,
    UNLABELED_TARGETS,
)
from keras_ssl.data.common import tf


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
