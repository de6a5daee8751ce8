"""A pseudo-label for every unlabeled image, refreshed by the teacher every few steps.

Self-training (Noisy Student style) does not run a weak view through the
model at every step: the teacher labels the whole unlabeled set now and then,
and the steps in between train the student on those stored labels. The table
lives outside the compiled step, in numpy: the input pipeline adds each
unlabeled batch's rows to the batch (`"unlabeled_targets"`), so it works the
same on every backend and is not part of the model's checkpoints (a resumed
run refreshes it at the start of its first epoch).

    images (numpy, all unlabeled) --teacher, every few steps (`refresh_every`)-->
    table (n, classes) --algorithm.table_targets (e.g. alignment)--> rows
    rows --algorithm.table_selection (e.g. confident, balanced per class)-->
         selected images and their draw weights
    stream: batches drawn from the selected images, with their rows
            {"images", "index", "targets"[, "labels"]} --views--> the step

Drawing the batches from the selected images (not from all of them, masking
the rest in the loss) is what makes every unlabeled image of a step count:
with a 0.8 threshold early tables select a quarter of the set.
"""

import warnings

import keras
import numpy as np


class PseudoLabelTable:
    """The teacher's class probabilities for every unlabeled image.

    Made by `SemiSupervisedModel.fit` for algorithms with `uses_table`
    (e.g. `keras_ssl.SelfTraining`); users rarely build one.

    Args:
        images: the unlabeled images (numpy array, as passed to `fit`).
        num_classes: width of the model's output.
        labels: optional ground truth of `images` (monitoring only).
        select: callable `rows -> mask` of the images batches are drawn
            from: booleans (drawn uniformly) or non-negative draw weights
            (0: not drawn). None: all, uniformly.
        seed: seed of the draws (default: from numpy's global generator,
            which `keras.utils.set_random_seed` seeds).
    """

    def __init__(self, images, num_classes, labels=None, select=None, seed=None):
        self.images = images
        self.labels = None if labels is None else np.asarray(labels).reshape(-1)
        self.num_classes = int(num_classes)
        self.select = select
        self.selected = np.arange(len(images))
        self.draw_probabilities = None  # over `selected`; None: uniform
        seed = np.random.randint(2 ** 31) if seed is None else seed
        self._rng = np.random.default_rng(seed)
        # Uniform rows: no image is confident before the first refresh.
        self.probs = np.full((len(images), self.num_classes), 1.0 / self.num_classes,
                             dtype="float32")
        self.refreshed_at_step = None
        self.batchnorm_steps = None  # of the last refresh
        self.refreshes = 0
        self.seconds = 0.0
        # (step, "made" | "set aside", labeled accuracy) when a warm-up or
        # guard (`TableRefresh(ready=...)`) puts the table in or out of use.
        self.events = []

    def __len__(self):
        return len(self.probs)

    def lookup(self, index):
        """Rows of the table for integer `index` (numpy in, numpy out)."""
        return self.probs[np.asarray(index)]

    def draw(self, batch_size):
        """Indices of `batch_size` images drawn from the selected ones (uniformly,
        or by the selection's weights), without replacement within a batch
        when there are enough."""
        if not len(self.selected):
            pool, p = np.arange(len(self.images)), None
        else:
            pool, p = self.selected, self.draw_probabilities
        return self._rng.choice(pool, int(batch_size), replace=len(pool) < batch_size, p=p)

    def _batch(self, batch_size):
        index = self.draw(batch_size)
        out = [self.images[index], index.astype("int32"), self.probs[index]]
        if self.labels is not None:
            out.append(self.labels[index].astype("int64"))
        return out

    def stream(self, batch_size):
        """An endless `tf.data` stream of drawn batches (reads the current table)."""
        import tensorflow as tf

        batch_size = int(batch_size)
        dtypes = [tf.as_dtype(self.images.dtype), tf.int32, tf.float32]
        if self.labels is not None:
            dtypes.append(tf.int64)

        def draw(_):
            values = tf.numpy_function(lambda: self._batch(batch_size), [], dtypes,
                                       stateful=True)
            values[0].set_shape((batch_size,) + tuple(self.images.shape[1:]))
            values[1].set_shape((batch_size,))
            values[2].set_shape((batch_size, self.num_classes))
            element = {"images": values[0], "index": values[1], "targets": values[2]}
            if self.labels is not None:
                values[3].set_shape((batch_size,))
                element["labels"] = values[3]
            return element

        # One draw at a time (the generator is not shared between threads).
        return tf.data.Dataset.range(2 ** 62).map(draw)

    def refresh(self, ssl_model, batch_size=256):
        """Label every image with `ssl_model`'s teacher; apply the algorithm's targets.

        The teacher is the EMA of the weights when the model keeps one and
        the algorithm asks for it (`use_ema`), else the current weights; with
        the moving BatchNorm statistics, or statistics recomputed on batches
        of the unlabeled images (as many as the algorithm's
        `refresh_batchnorm_steps(model, step)`).
        Inference mode; the model's weights and statistics are the same
        afterwards.
        """
        import time

        start = time.perf_counter()
        algorithm = ssl_model.algorithm
        use_ema = bool(getattr(algorithm, "use_ema", True)) and bool(ssl_model.teacher_weights)
        step = int(keras.ops.convert_to_numpy(ssl_model.ssl_step))
        steps = algorithm.refresh_batchnorm_steps(ssl_model.model, step)
        with ssl_model.ema_weights(batchnorm_data=self.images if steps else None,
                                   batchnorm_steps=steps, student=not use_ema):
            probs = self._predict(ssl_model, batch_size)
        self.probs[...] = np.asarray(algorithm.table_targets(probs), dtype="float32")
        self.update_selection()
        self.refreshed_at_step = step
        self.batchnorm_steps = steps
        self.refreshes += 1
        self.seconds += time.perf_counter() - start
        return self.probs

    def set_aside(self):
        """Uniform rows, as before the first refresh: no image is confident,
        so the drawn batches train nothing until the next refresh."""
        self.probs[...] = 1.0 / self.num_classes
        self.update_selection()

    def update_selection(self):
        """Apply `select` to the current rows: the images (and their draw
        weights) the next batches are drawn from. `refresh` calls it."""
        if self.select is None:
            return
        chosen = np.asarray(self.select(self.probs))
        if chosen.dtype == bool:
            self.selected, self.draw_probabilities = np.flatnonzero(chosen), None
            return
        weights = chosen.astype("float64").reshape(-1)
        if weights.shape != (len(self),) or np.any(~np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(
                "The algorithm's `table_selection(rows)` must return a boolean mask or "
                f"finite non-negative weights, one per unlabeled image ({len(self)}); "
                f"received shape {chosen.shape}."
            )
        self.selected = np.flatnonzero(weights > 0)
        total = weights[self.selected].sum()
        self.draw_probabilities = (weights[self.selected] / total) if total > 0 else None

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
    """Refreshes a `PseudoLabelTable` every `every` training steps.

    `every` is an int, or a function of the table's rows (None before the
    first refresh) that gives the steps to the next refresh.

    At the first epoch of a `fit`, then before the step that is due, in the
    middle of an epoch too. On JAX, whose trainer keeps the weights outside
    the variables during an epoch, it first syncs them
    (`model.jax_state_sync()`; the trainer reads them back for the next
    step), so the teacher is the current model on every backend. Batches
    the input pipeline already drew (prefetched) carry the older rows.
    `fit` adds it for algorithms with a table.

    With `ready` (the algorithm's `table_ready(labeled_accuracy, in_use)`),
    every `check_every` steps it reads the mean `labeled_accuracy` (from the
    logs) of the steps since the last look: the table is made (and refreshed) only while
    `ready` says so, and set aside (uniform rows: nothing is trained on)
    when it stops saying so. `table.events` records each change (printed
    with `report=True`).
    """

    def __init__(self, table, every, verbose=0, ready=None, check_every=20, report=False):
        super().__init__()
        self.table = table
        # An int, or a function of the table giving the steps to the next
        # refresh (asked after each refresh).
        self._interval = every if callable(every) else None
        self.every = int(every) if self._interval is None else int(every(None))
        self.verbose = verbose
        self.ready = ready
        self.report = report  # print when the table is made or set aside
        self.check_every = max(1, int(check_every))
        self.in_use = ready is None
        self._last = None
        self._epoch_start = 0
        self._checked = None
        self._seen = None
        self._accuracy = None
        self._done = (0.0, 0)  # labeled accuracy summed over the steps of past epochs
        self._epoch = (0, None)  # the current epoch's steps and last batch logs

    def on_train_begin(self, logs=None):
        self._last = None
        self._checked = None
        self._seen = None
        self._done, self._epoch = (0.0, 0), (0, None)
        self.in_use = self.ready is None or bool(self.ready(None, False))

    def on_epoch_begin(self, epoch, logs=None):
        # First, so that the other callbacks' epoch begins see the fresh table.
        self._epoch_start = int(keras.ops.convert_to_numpy(self.model.ssl_step))
        self._at(self._epoch_start)

    def on_train_batch_begin(self, batch, logs=None):
        self._at(self._epoch_start + int(batch))  # the step about to run

    def on_train_end(self, logs=None):
        if self.ready is not None and not self.table.refreshes:
            seen = ("not measured" if self._accuracy is None
                    else f"{100 * self._accuracy:.0f} % at the last look")
            warnings.warn(
                "The pseudo-label table was never made, so the unlabeled images were not "
                "trained on: the model never got enough of its labeled training batches "
                f"right (labeled_accuracy {seen}; the algorithm's min_labeled_accuracy "
                "sets the level). Train longer, or pass min_labeled_accuracy=0 to label "
                "with the model as it is.",
                stacklevel=2,
            )

    def _at(self, step):
        if self.ready is not None and (self._checked is None
                                       or step - self._checked >= self.check_every):
            accuracy = self._labeled_accuracy()
            self._checked = step
            if accuracy is not None:
                self._accuracy = accuracy
            wanted = bool(self.ready(accuracy, self.in_use))
            if wanted != self.in_use:
                self.in_use = wanted
                self.table.events.append(
                    (step, "made" if wanted else "set aside", accuracy))
                if self.verbose or self.report:
                    what = "made" if wanted else "set aside"
                    print(f"\nkeras-ssl: pseudo-label table {what} at step {step} "
                          f"(labeled accuracy {100 * accuracy:.1f} % over the last "
                          f"{self.check_every} steps).", flush=True)
                if wanted:
                    self._refresh(step)
                else:
                    self.table.set_aside()
                    self._last = None
                return
        if self.in_use and (self._last is None or step - self._last >= self.every):
            self._sync()
            self._refresh(step)

    def _sync(self):
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()

    def on_train_batch_end(self, batch, logs=None):
        self._epoch = (int(batch) + 1, logs)  # read at the next look only

    def on_epoch_end(self, epoch, logs=None):
        steps, _ = self._epoch
        mean = (logs or {}).get("labeled_accuracy")
        if steps and mean is not None:
            self._done = (self._done[0] + steps * float(mean), self._done[1] + steps)
        self._epoch = (0, None)

    def _labeled_accuracy(self):
        """Mean `labeled_accuracy` of the steps since the last look (None: no step).

        From the logs: a running mean over the epoch's steps at each batch
        end, the epoch's mean at its end, summed over the epochs so far.
        """
        total, steps = self._done
        done, logs = self._epoch
        if done and logs and logs.get("labeled_accuracy") is not None:
            total, steps = total + done * float(logs["labeled_accuracy"]), steps + done
        seen, self._seen = self._seen, (total, steps)
        if seen is None or steps <= seen[1]:
            return None
        return (total - seen[0]) / (steps - seen[1])

    def _refresh(self, step):
        self.table.refresh(self.model)
        self._last = step
        if self._interval is not None:
            self.every = int(self._interval(self.table.probs))
        if self.verbose:
            share = len(self.table.selected) / len(self.table)
            print(f"pseudo-label table refreshed at step {step}: "
                  f"{100 * share:.1f} % of the unlabeled images selected", flush=True)
