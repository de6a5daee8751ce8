"""`TimeLimit`: stop training when a wall-clock budget is spent."""

import time

import keras

from keras_ssl.callbacks import _state


class TimeLimit(keras.callbacks.Callback):
    """Stops `fit` when a wall-clock budget is spent: at the end of the epoch, or mid-epoch.

    A budget in time rather than epochs, for a fair comparison of methods
    whose steps cost differently (the same minutes for the supervised
    baseline and for SSL), or to fit a run into a slot. By default the epoch
    in progress is finished; with `mid_epoch=True` training stops after the
    first step that ends past the budget, so that long epochs do not
    overrun it (Keras still runs that epoch's validation and its epoch-end
    callbacks).

    Example:

    ```python
    ssl.fit(x, y, unlabeled=u, epochs=1000,
            callbacks=[keras_ssl.callbacks.TimeLimit(minutes=10)])
    ```

    Args:
        minutes: the budget, counted from `on_train_begin`.
        verbose: print a line when it stops training.
        mid_epoch: also stop inside an epoch. Default False.
        started_at: a `time.perf_counter()` value to count from, for a
            budget that began before this `fit` (reading the data, an
            earlier `fit`); None (default) counts from `on_train_begin`.
    """

    def __init__(self, minutes, verbose=1, mid_epoch=False, started_at=None):
        super().__init__()
        if isinstance(minutes, bool) or not float(minutes) > 0:
            raise ValueError(f"TimeLimit(minutes=...) must be > 0; received {minutes!r}.")
        self.minutes = float(minutes)
        self.verbose = verbose
        self.mid_epoch = bool(mid_epoch)
        self.started_at = started_at
        self.stopped_epoch = None
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter() if self.started_at is None else self.started_at
        self.stopped_epoch = None

    def on_train_batch_end(self, batch, logs=None):
        if self.mid_epoch and not self.model.stop_training and (
                time.perf_counter() - self._start) / 60.0 >= self.minutes:
            self.model.stop_training = True  # Keras ends the epoch after this step

    def on_epoch_end(self, epoch, logs=None):
        spent = (time.perf_counter() - self._start) / 60.0
        if spent >= self.minutes:
            self.model.stop_training = True
            self.stopped_epoch = epoch
            if self.verbose:
                _state.print_msg(
                    f"TimeLimit: {spent:.1f} of {self.minutes:g} minutes spent; training "
                    f"stops after epoch {epoch + 1}."
                )
