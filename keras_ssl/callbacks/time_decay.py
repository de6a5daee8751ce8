"""`CosineDecayByTime`: a cosine learning-rate decay over a wall-time budget."""

import math
import time

import keras


class CosineDecayByTime(keras.callbacks.Callback):
    """Sets the learning rate to a cosine decay over a wall-time budget.

    `keras.optimizers.schedules.CosineDecay` decays over a number of steps;
    with a budget in minutes the number of steps is not known in advance
    (and differs between a supervised and an SSL step). This callback sets
    the optimizer's learning rate before every step from the share of the
    budget spent, `t`: `alpha_lr + (initial - alpha_lr) * (1 + cos(pi t)) / 2`,
    reaching `alpha * initial` when the budget ends. `keras-ssl train` uses
    it with `--minutes`.

    Example:

    ```python
    ssl.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9))
    ssl.fit(x, y, unlabeled=u, epochs=10 ** 4, callbacks=[
        keras_ssl.callbacks.CosineDecayByTime(minutes=10, initial_learning_rate=0.03),
        keras_ssl.callbacks.TimeLimit(minutes=10, mid_epoch=True)])
    ```

    Args:
        minutes: the budget the decay spans.
        initial_learning_rate: the rate at the start.
        alpha: the final rate as a fraction of the initial one. Default 0.
        started_at: a `time.perf_counter()` value the budget began at; None
            (default) counts from the first `on_train_begin`, and a later
            `fit` with the same callback continues the decay.

    The optimizer's `learning_rate` must be a float (a variable), not a
    schedule. The rate is set between steps: on the TensorFlow backend before
    every step, on JAX and PyTorch at the start of every epoch.
    """

    def __init__(self, minutes, initial_learning_rate, alpha=0.0, started_at=None):
        super().__init__()
        if isinstance(minutes, bool) or not float(minutes) > 0:
            raise ValueError(
                f"CosineDecayByTime(minutes=...) must be > 0; received {minutes!r}.")
        if not float(initial_learning_rate) > 0 or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(
                "CosineDecayByTime needs initial_learning_rate > 0 and alpha in [0, 1]; "
                f"received {initial_learning_rate!r} and {alpha!r}.")
        self.seconds = 60.0 * float(minutes)
        self.initial = float(initial_learning_rate)
        self.alpha = float(alpha)
        self.started_at = started_at

    def rate(self, now=None):
        """The learning rate at `now` (a `time.perf_counter()` value)."""
        now = time.perf_counter() if now is None else now
        share = min(max((now - self.started_at) / self.seconds, 0.0), 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * share))
        return self.initial * (self.alpha + (1.0 - self.alpha) * cosine)

    def on_train_begin(self, logs=None):
        if self.started_at is None:
            self.started_at = time.perf_counter()
        self._set()

    def on_epoch_begin(self, epoch, logs=None):
        self._set()

    def on_train_batch_begin(self, batch, logs=None):
        if keras.backend.backend() == "tensorflow":
            self._set()

    def _set(self):
        self.model.optimizer.learning_rate = self.rate()
