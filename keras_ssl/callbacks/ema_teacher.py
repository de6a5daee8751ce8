"""`EMATeacher`: an exponential moving average of the weights, as teacher and for evaluation."""

import warnings

import keras
from keras import ops

from keras_ssl import _compat, losses
from keras_ssl.callbacks import _state


class EMATeacher(keras.callbacks.Callback):
    """Evaluates (and optionally finishes) with an exponential moving average of the weights.

    The averaged weights generalize better than the last ones in short,
    noisy runs. Before each validation (and `evaluate`/`predict` called with
    this callback) the EMA weights are swapped into the model and swapped out
    after it, as `keras.callbacks.SwapEMAWeights` does;
    `keep_ema_weights=True` leaves them in the model when training ends.

    With a `keras_ssl.SemiSupervisedModel` the callback creates nothing: the
    model owns the EMA (`SemiSupervisedModel(ema_decay=0.999)`, the default),
    updates it inside the compiled step, and saves it in every checkpoint, so
    what a checkpoint holds never depends on the callback list. The callback
    only decides when to use those weights.

    With a plain `keras.Model`, the callback keeps the average in its own
    variables (`ema = d * ema + (1 - d) * w`, decay warm-up
    `d = min(decay, (1 + t) / (10 + t))`) and updates it in
    `on_train_batch_end`; those are not in the model's checkpoints (after a
    `BackupAndRestore` resume the average restarts from the restored weights).
    With `steps_per_execution=k` it is updated once every `k` steps with
    decay `d**k`.

    BatchNorm statistics: the EMA covers the trainable weights only; the
    moving statistics are shared with the student. For exact statistics of
    the swapped-in EMA weights, add `BatchNormWarmup(data,
    before_validation=True)` after this callback, or call
    `recompute_batchnorm_statistics` after `keep_ema_weights=True`.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.FixMatch(), ema_decay=0.99)
    ssl.compile(optimizer="adam", metrics=["accuracy"])
    ssl.fit(x, y, unlabeled=x_unlabeled, epochs=10,
            validation_data=(x_val, y_val),  # validated with the EMA weights
            callbacks=[keras_ssl.callbacks.EMATeacher(keep_ema_weights=True)])
    ```

    Args:
        decay: for a plain `keras.Model`, the EMA decay in [0, 1) (default
            0.999). For a `SemiSupervisedModel` leave it None: the model's
            `ema_decay` is used (passing one is deprecated; it sets the
            model's).
        warmup: for a plain `keras.Model`, use the decay warm-up. Default True.
        validate_with_ema: swap the EMA weights in for validation (and for
            `evaluate`/`predict` called with this callback). Default True.
        keep_ema_weights: copy the EMA weights into the model when training
            ends. Default False (the model keeps its last weights).
    """

    def __init__(self, decay=None, warmup=None, validate_with_ema=True,
                 keep_ema_weights=False):
        super().__init__()
        if decay is not None and (isinstance(decay, bool) or not 0.0 <= float(decay) < 1.0):
            raise ValueError(
                f"EMATeacher(decay=...) must be a float in [0, 1); received {decay!r}. "
                "Typical values are 0.99 (short runs) to 0.9999."
            )
        self._given = (decay, warmup)
        self.decay = 0.999 if decay is None else float(decay)
        self.warmup = True if warmup is None else bool(warmup)
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
            self._use_model_teacher(model)

    def _use_model_teacher(self, model):
        if model.ema_decay is None:
            raise ValueError(
                "EMATeacher uses the EMA weights that a SemiSupervisedModel keeps, but "
                "this one was built with ema_decay=None. Build it with "
                "SemiSupervisedModel(..., ema_decay=0.999) (the default)."
            )
        decay, warmup = self._given
        if (decay is not None and float(decay) != model.ema_decay) or (
            warmup is not None and bool(warmup) != model.ema_warmup
        ):
            warnings.warn(
                f"EMATeacher(decay={decay}, warmup={warmup}) on a SemiSupervisedModel is "
                "deprecated: the model owns the EMA. It replaces the model's "
                f"ema_decay={model.ema_decay} (algorithm {type(model.algorithm).__name__});"
                " pass SemiSupervisedModel(..., ema_decay=...) instead.",
                FutureWarning,
                stacklevel=3,
            )
            if decay is not None:
                model.ema_decay = float(decay)
            if warmup is not None:
                model.ema_warmup = bool(warmup)
            # A step compiled with the old decay must be compiled again.
            model.train_function = None
        self.decay, self.warmup = model.ema_decay, model.ema_warmup

    @property
    def uses_model_teacher(self):
        """True when the model keeps the EMA itself (a SemiSupervisedModel)."""
        return _state.is_semi_supervised(self.model)

    def _pairs(self):
        """(model variable, EMA variable) pairs."""
        if self.uses_model_teacher:
            return list(zip(self.model.teacher_sources, self.model.teacher_weights))
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
        return _compat.live_trainable_values(self.model)

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
