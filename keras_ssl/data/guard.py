"""Bad values found in streams after their first batch: skipped, counted, reported."""

import warnings

import keras

from keras_ssl import checks
from keras_ssl.data.common import tf


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
