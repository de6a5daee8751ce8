"""`TimeLimit`: stop training when a wall-clock budget is spent."""

import time

import keras

from keras_ssl.callbacks import _state


class TimeLimit(keras.callbacks.Callback):
    """Stops `fit` at the end of the first epoch that ends after `minutes`.

    A budget in time rather than epochs, for a fair comparison of methods
    whose steps cost differently (the same minutes for the supervised
    baseline and for SSL), or to fit a run into a slot. The epoch in progress
    is finished (its validation and checkpoints run as usual).

    Example:

    ```python
    ssl.fit(x, y, unlabeled=u, epochs=1000,
            callbacks=[keras_ssl.callbacks.TimeLimit(minutes=10)])
    ```

    Args:
        minutes: the budget, counted from `on_train_begin`.
        verbose: print a line when it stops training.
    """

    def __init__(self, minutes, verbose=1):
        super().__init__()
        if isinstance(minutes, bool) or not float(minutes) > 0:
            raise ValueError(f"TimeLimit(minutes=...) must be > 0; received {minutes!r}.")
        self.minutes = float(minutes)
        self.verbose = verbose
        self.stopped_epoch = None
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()
        self.stopped_epoch = None

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
