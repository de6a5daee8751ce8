"""`BatchNormWarmup`: exact BatchNorm statistics at the moments that matter."""

import keras

from keras_ssl.batchnorm import (  # noqa: F401 - re-exported, as before
    batchnorm_layers,
    recompute_batchnorm_statistics,
)
from keras_ssl.callbacks import _state


class BatchNormWarmup(keras.callbacks.Callback):
    """Recomputes BatchNorm statistics exactly at the moments that matter.

    A short run (a few hundred steps on a small labeled set, typical of SSL)
    leaves BatchNorm's moving mean and variance lagging behind the weights
    with Keras's default momentum 0.99: they still average the first steps
    (docs/callbacks.md measures what that costs). This callback calls
    `keras_ssl.callbacks.recompute_batchnorm_statistics` (see there for what
    "exact" means: a cumulative average of per-batch means and variances
    over `steps` batches of `data`, with no other weight changed):

    - when training begins (after the weights are restored by
      `BackupAndRestore`, whatever the order of the callbacks);
    - at each phase switch: when the model's `unlabeled_loss_scale` changes
      between epochs, as `PlateauPhaseSwitch` does;
    - optionally before each validation (`before_validation=True`), after
      the other callbacks' `on_test_begin`: with `EMATeacher`, the
      statistics are recomputed for the EMA weights it swapped in.

    Recomputed statistics stay in the model (they are only used outside
    training, where they are better than the lagging ones). Works on
    TensorFlow, JAX and PyTorch; the forward passes are eager, so keep
    `steps` modest (tens of batches).

    Example:

    ```python
    warmup = keras_ssl.callbacks.BatchNormWarmup(x_unlabeled, steps=50,
                                                 before_validation=True)
    model.fit(x, y, validation_data=(x_val, y_val), epochs=10,
              callbacks=[warmup])
    ```

    Args:
        data: images like those evaluated on, not augmented (labeled and/or
            unlabeled training images): anything
            `recompute_batchnorm_statistics` takes.
        steps: batches per recomputation. None: one pass over `data`.
        batch_size: batch size for array data. Default 32.
        at_train_begin: recompute when training begins. Default True.
        at_phase_switch: recompute when `unlabeled_loss_scale` changed since
            the previous epoch. Default True.
        before_validation: recompute before each validation. Default False.
        seed: shuffle seed for array data. Default 0.
        verbose: 1 prints a line at each recomputation. Default 0.
    """

    def __init__(self, data, steps=None, batch_size=32, at_train_begin=True,
                 at_phase_switch=True, before_validation=False, seed=0, verbose=0):
        super().__init__()
        if data is None:
            raise ValueError(
                "BatchNormWarmup(data=...) needs images to run forward, e.g. the "
                "unlabeled images; received None."
            )
        if steps is not None and (isinstance(steps, bool) or int(steps) < 1):
            raise ValueError(
                f"BatchNormWarmup(steps=...) must be None (one pass over `data`) "
                f"or an integer >= 1; received {steps!r}."
            )
        self.data = data
        self.steps = steps
        self.batch_size = int(batch_size)
        self.at_train_begin = bool(at_train_begin)
        self.at_phase_switch = bool(at_phase_switch)
        self.before_validation = bool(before_validation)
        self.seed = seed
        self.verbose = verbose
        self.recomputations = []  # (when, epoch) of each recomputation
        self._pending = None
        self._last_scale = None
        self._epoch = None
        self._validating = False

    def recompute(self, reason="manual"):
        """Recompute now (variables must be in sync: epoch boundaries are)."""
        layers = recompute_batchnorm_statistics(
            self.model, self.data, self.steps, self.batch_size, self.seed
        )
        self.recomputations.append((reason, self._epoch))
        if self.verbose:
            _state.print_msg(
                f"BatchNormWarmup: recomputed {len(layers)} BatchNorm layers ({reason})."
            )
        return layers

    def on_train_begin(self, logs=None):
        self._last_scale = None
        self._epoch = None
        # Deferred to the first epoch so that BackupAndRestore's
        # on_train_begin has restored the weights, whatever the order.
        self._pending = "train begin" if self.at_train_begin else None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        scale = _state.unlabeled_loss_scale(self.model)
        reason = self._pending
        if (self.at_phase_switch and scale is not None and self._last_scale is not None
                and scale != self._last_scale):
            reason = "phase switch"
        self._last_scale = scale
        self._pending = None
        if reason:
            self.recompute(reason)

    def on_test_begin(self, logs=None):
        self._validating = self.before_validation

    def on_test_batch_begin(self, batch, logs=None):
        # The first test batch comes after every callback's on_test_begin
        # (EMATeacher's swap) and, on JAX, before the state is gathered.
        if self._validating:
            self._validating = False
            self.recompute("before validation")
