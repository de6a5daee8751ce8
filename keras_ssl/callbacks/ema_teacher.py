"""`EMATeacher`: an exponential moving average of the weights, as teacher and for evaluation."""

import warnings

import keras
from keras import ops

from keras_ssl import losses
from keras_ssl.callbacks import _state


class EMATeacher(keras.callbacks.Callback):
    """Keeps an exponential moving average (EMA) of the model's weights.

    After every optimizer step the average moves towards the weights:
    `ema = d * ema + (1 - d) * w`, with the usual warm-up of the decay,
    `d = min(decay, (1 + t) / (10 + t))` at step `t`, so that the average
    forgets the random initialization within the first steps. The averaged
    weights generalize better than the last ones in short, noisy runs; Mean
    Teacher uses them as its teacher, and any model can be validated with
    them: before each validation the EMA weights are swapped into the model
    and swapped out after it (as `keras.callbacks.SwapEMAWeights` does), and
    `keep_ema_weights=True` leaves them in the model when training ends.

    With a `keras_ssl.SemiSupervisedModel`, the callback turns on the
    model's own teacher (`model.enable_teacher(decay, warmup)`): the update
    runs inside the compiled training step (no per-step Python), the EMA
    weights are model variables (`model.teacher_weights`), so they are saved
    by `ModelCheckpoint`/`save_weights` and restored by `BackupAndRestore`,
    and Mean Teacher's consistency loss uses exactly these weights. Its
    decay then replaces the algorithm's (`MeanTeacher(ema_decay=...)`).

    With a plain `keras.Model`, the callback keeps the average in its own
    variables and updates it in `on_train_batch_end` with
    `keras_ssl.losses.ema_decay`/`ema_update` (on JAX it reads the step's
    live state). Those variables are not part of the model, so they are not
    in its checkpoints; after a `BackupAndRestore` resume the average
    restarts from the restored weights (the decay's warm-up continues from
    `optimizer.iterations`). With `steps_per_execution=k` it is updated once
    every `k` steps with decay `d**k`.

    BatchNorm statistics: the teacher averages the trainable weights only.
    The moving mean and variance are not learned weights but statistics of
    activations; averaging them again would lag even more than they already
    do, and in training the teacher normalizes with batch statistics anyway.
    So the teacher shares the student's moving statistics, which is close
    (the averaged weights are close to the current ones) but not exact. For
    exact statistics of the swapped-in EMA weights, add
    `BatchNormWarmup(data, before_validation=True)`: it recomputes them
    after this callback has swapped the weights in; or call
    `recompute_batchnorm_statistics` after `keep_ema_weights=True`.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.MeanTeacher())
    ssl.compile(optimizer="adam", metrics=["accuracy"])
    ssl.fit(x, y, unlabeled=x_unlabeled, epochs=10,
            validation_data=(x_val, y_val),  # validated with the EMA weights
            callbacks=[keras_ssl.callbacks.EMATeacher(decay=0.99,
                                                      keep_ema_weights=True)])
    ```

    Args:
        decay: EMA decay in [0, 1). Default 0.999 (0.99 suits runs of a few
            hundred steps: the average spans about `1 / (1 - decay)` steps).
        warmup: use `min(decay, (1 + t) / (10 + t))`. Default True.
        validate_with_ema: swap the EMA weights in for validation (and for
            `evaluate`/`predict` called with this callback). Default True.
        keep_ema_weights: copy the EMA weights into the model when training
            ends. Default False (the model keeps its last weights).
    """

    def __init__(self, decay=0.999, warmup=True, validate_with_ema=True,
                 keep_ema_weights=False):
        super().__init__()
        if isinstance(decay, bool) or not 0.0 <= float(decay) < 1.0:
            raise ValueError(
                f"EMATeacher(decay=...) must be a float in [0, 1); received {decay!r}. "
                "Typical values are 0.99 (short runs) to 0.9999."
            )
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.validate_with_ema = bool(validate_with_ema)
        self.keep_ema_weights = bool(keep_ema_weights)
        self._average = []  # plain keras.Model only
        self._average_model = None
        self._step = None
        self._last_batch = -1
        self._swapped = False

    # ------------------------------------------------------------ set-up

    def set_model(self, model):
        super().set_model(model)
        if _state.is_semi_supervised(model):
            self._enable_model_teacher(model)

    def _enable_model_teacher(self, model):
        wanted = {"decay": self.decay, "warmup": self.warmup}
        current = model.ema_teacher
        if current == wanted:
            return
        algorithm_decay = model.algorithm.teacher_decay
        if algorithm_decay is not None and algorithm_decay != self.decay:
            warnings.warn(
                f"EMATeacher(decay={self.decay}) replaces the decay of "
                f"{type(model.algorithm).__name__} (ema_decay={algorithm_decay}).",
                stacklevel=3,
            )
        model.enable_teacher(self.decay, self.warmup)
        if getattr(model, "train_function", None) is not None:
            # A step compiled before (without a teacher, or with another decay)
            # must be compiled again; fit does it after attaching callbacks.
            model.train_function = None

    @property
    def uses_model_teacher(self):
        """True when the model keeps the EMA itself (a SemiSupervisedModel)."""
        return _state.is_semi_supervised(self.model)

    def _pairs(self):
        """(model variable, EMA variable) pairs."""
        if self.uses_model_teacher:
            return list(zip(self.model.model.trainable_variables, self.model.teacher_weights))
        return list(zip(self.model.trainable_variables, self._average))

    @property
    def ema_weights(self):
        """The EMA weights as numpy arrays, in `trainable_variables` order."""
        if self._swapped:
            return [ops.convert_to_numpy(w) for w, _ in self._pairs()]
        return [ops.convert_to_numpy(a) for _, a in self._pairs()]

    # ------------------------------------------------ plain keras.Model EMA

    def on_train_begin(self, logs=None):
        self._step = None
        self._last_batch = -1

    def on_epoch_begin(self, epoch, logs=None):
        if self.uses_model_teacher or self._step is not None:
            return
        # First epoch of this fit: after every on_train_begin (so after
        # BackupAndRestore restored the weights), before JAX gathers state.
        variables = self.model.trainable_variables
        same = self._average_model is self.model and len(self._average) == len(variables)
        if not same:
            self._average = [
                keras.Variable(ops.copy(v.value), trainable=False,
                               name=f"ema_{v.name}")
                for v in variables
            ]
            self._average_model = self.model
        iterations = _state.optimizer_steps(self.model)
        self._step = iterations or 0

    def on_train_batch_end(self, batch, logs=None):
        if self.uses_model_teacher:
            return
        steps = batch - self._last_batch if batch > self._last_batch else batch + 1
        self._last_batch = batch
        decay = losses.ema_decay(self._step, self.decay, self.warmup)
        if steps > 1:
            decay = ops.power(decay, float(steps))
        for average, value in zip(self._average, self._student_values()):
            average.assign(losses.ema_update(average.value, value, decay))
        self._step += steps

    def on_epoch_end(self, epoch, logs=None):
        self._last_batch = -1

    def _student_values(self):
        # On JAX the model's variables are purged during an epoch and the live
        # values are in `_jax_state` (Keras's documented hook for callbacks).
        state = getattr(self.model, "_jax_state", None)
        if state and not getattr(self.model, "_jax_state_synced", True):
            return state["trainable_variables"]
        return [v.value for v in self.model.trainable_variables]

    # ------------------------------------------------------------- swaps

    def _has_average(self):
        if self.model is None:
            return False
        if self.uses_model_teacher:
            return bool(self.model.teacher_weights)
        return self._average_model is self.model and bool(self._average)

    def _swap(self):
        for variable, average in self._pairs():
            value = ops.convert_to_numpy(variable)
            # Copies: on JAX two variables must never share a buffer (the
            # compiled step donates them).
            variable.assign(ops.copy(average.value))
            average.assign(value)
        self._swapped = not self._swapped

    def swap_in(self):
        """Put the EMA weights in the model (the model's are kept aside)."""
        if not self._swapped and self._has_average():
            self._swap()

    def swap_out(self):
        """Put the model's own weights back after `swap_in`."""
        if self._swapped:
            self._swap()

    def on_test_begin(self, logs=None):
        if self.validate_with_ema:
            self.swap_in()

    def on_test_end(self, logs=None):
        self.swap_out()

    def on_predict_begin(self, logs=None):
        if self.validate_with_ema:
            self.swap_in()

    def on_predict_end(self, logs=None):
        self.swap_out()

    def on_train_end(self, logs=None):
        self.swap_out()
        if self.keep_ema_weights and self._has_average():
            for variable, average in self._pairs():
                variable.assign(ops.copy(average.value))
