"""A pseudo-label for every unlabeled image, refreshed by the teacher every few steps.

Self-training (Noisy Student style) does not run a weak view through the
model at every step: the teacher labels the whole unlabeled set now and then,
and the steps in between train the student on those stored labels. The table
lives outside the compiled step, in numpy: the input pipeline adds each
unlabeled batch's rows to the batch (`"unlabeled_targets"`), so it works the
same on every backend and is not part of the model's checkpoints (a resumed
run refreshes it at the start of its first epoch).

    images (numpy, all unlabeled) --teacher, every `refresh_every` steps-->
    table (n, classes) --algorithm.table_targets (e.g. alignment)--> rows
    batch indices --lookup in tf.data--> {"unlabeled_targets": rows}
"""

import numpy as np

import keras


class PseudoLabelTable:
    """The teacher's class probabilities for every unlabeled image.

    Made by `SemiSupervisedModel.fit` for algorithms with `uses_table`
    (e.g. `keras_ssl.SelfTraining`); users rarely build one.

    Args:
        images: the unlabeled images (numpy array, as passed to `fit`).
        num_classes: width of the model's output.
    """

    def __init__(self, images, num_classes):
        self.images = images
        self.num_classes = int(num_classes)
        # Uniform rows: no image is confident before the first refresh.
        self.probs = np.full((len(images), self.num_classes), 1.0 / self.num_classes,
                             dtype="float32")
        self.refreshed_at_step = None
        self.refreshes = 0
        self.seconds = 0.0

    def __len__(self):
        return len(self.probs)

    def lookup(self, index):
        """Rows of the table for integer `index` (numpy in, numpy out)."""
        return self.probs[np.asarray(index)]

    def tf_lookup(self, index):
        """`lookup` inside a `tf.data` map: reads the current table."""
        import tensorflow as tf

        rows = tf.numpy_function(self.lookup, [index], tf.float32, stateful=True)
        rows.set_shape(index.shape.concatenate([self.num_classes]))
        return rows

    def refresh(self, ssl_model, batch_size=256):
        """Label every image with `ssl_model`'s teacher; apply the algorithm's targets.

        The teacher is the EMA of the weights with BatchNorm statistics
        recomputed for them on the unlabeled images when the model keeps an
        EMA and the algorithm asks for it (`use_ema`), else the current weights
        (their moving statistics). Inference mode; the model's weights and
        statistics are the same afterwards.
        """
        import time

        start = time.perf_counter()
        algorithm = ssl_model.algorithm
        use_ema = bool(getattr(algorithm, "use_ema", True)) and bool(ssl_model.teacher_weights)
        if use_ema:
            with ssl_model.ema_weights(batchnorm_data=self.images,
                                       batchnorm_steps=algorithm.batchnorm_steps):
                probs = self._predict(ssl_model, batch_size)
        else:
            probs = self._predict(ssl_model, batch_size)
        self.probs[...] = np.asarray(algorithm.table_targets(probs), dtype="float32")
        self.refreshed_at_step = int(keras.ops.convert_to_numpy(ssl_model.ssl_step))
        self.refreshes += 1
        self.seconds += time.perf_counter() - start
        return self.probs

    def _predict(self, ssl_model, batch_size):
        flip = bool(getattr(ssl_model.algorithm, "flip_average", False))
        outputs = []
        for start in range(0, len(self.images), batch_size):
            x = keras.ops.convert_to_tensor(
                np.asarray(self.images[start:start + batch_size], dtype="float32")
            )
            probs = keras.ops.softmax(ssl_model._as_logits(ssl_model.model(x, training=False)))
            if flip:
                mirrored = ssl_model.model(keras.ops.flip(x, axis=2), training=False)
                probs = 0.5 * (probs + keras.ops.softmax(ssl_model._as_logits(mirrored)))
            outputs.append(keras.ops.convert_to_numpy(probs))
        return np.concatenate(outputs).astype("float32")


class TableRefresh(keras.callbacks.Callback):
    """Refreshes a `PseudoLabelTable` at the start of an epoch when it is due.

    Due: at the first epoch of a `fit`, then whenever `every` steps have
    passed since the last refresh. Refreshing between epochs (not batches)
    keeps it exact on every backend (on JAX the weights are only in the
    variables between epochs); choose `steps_per_epoch` at most `every`.
    `fit` adds it for algorithms with a table.
    """

    def __init__(self, table, every, verbose=0):
        super().__init__()
        self.table = table
        self.every = int(every)
        self.verbose = verbose
        self._last = None

    def on_train_begin(self, logs=None):
        self._last = None

    def on_epoch_begin(self, epoch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.ssl_step))
        if self._last is not None and step - self._last < self.every:
            return
        self.table.refresh(self.model)
        self._last = step
        if self.verbose:
            confident = float(np.mean(self.table.probs.max(axis=1) >= getattr(
                self.model.algorithm, "threshold", 0.0)))
            print(f"pseudo-label table refreshed at step {step}: "
                  f"{100 * confident:.1f} % confident", flush=True)
