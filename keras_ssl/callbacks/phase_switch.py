"""`PlateauPhaseSwitch`: supervised until a plateau, then SSL until a plateau."""

import math
import warnings

from keras import ops

from keras_ssl import _compat
from keras_ssl.callbacks import _state

SUPERVISED, SEMI_SUPERVISED = 1, 2


class PlateauPhaseSwitch(_compat.monitor_callback_base()):
    """Trains supervised until a plateau, then semi-supervised until a plateau.

    SSL losses are most useful once the model's predictions on unlabeled
    images are worth learning from; a supervised phase first gets there
    cheaply. Phase 1 trains with the unlabeled loss off (the model's
    `unlabeled_loss_scale` variable, read by the compiled step, is 0). When
    the monitored value has not improved for `patience` epochs, phase 2
    begins: the best weights so far are restored (with
    `restore_best_weights=True`) if the last epoch is worse than them by
    more than `min_delta`, the unlabeled loss is turned on (scale 1)
    and training goes on. A `BatchNormWarmup` callback in the same `fit`
    sees the switch and recomputes BatchNorm statistics. When phase 2 has not
    improved on the best value of the run for `patience` epochs
    (`phase2_patience` if given), training stops and the best weights of
    the whole run are restored: if SSL never beat the supervised phase, that
    is the supervised model, and the log says so.

    Each phase change is printed (`verbose=1`) and every epoch's logs get a
    `phase` entry (1 or 2), so `History` and `CSVLogger` record it. The phase
    lives in the model's `unlabeled_loss_scale` variable, which is saved in
    checkpoints: a run resumed by `BackupAndRestore` continues in the phase
    it was in (the phase is read back when the first epoch begins, after
    every callback's `on_train_begin`, so their order does not matter
    there). The plateau counters (best value, epochs without improvement,
    best weights) are not in the checkpoint; after a resume they start
    again from the restored weights.

    Callbacks that act at the end of an epoch run in list order: put this
    one before `BackupAndRestore`, `ModelCheckpoint` and `CSVLogger`, so that
    the epoch that decides a switch is saved with the switch (the new phase
    and the restored best weights) and logged with its `phase`.

    Each `fit` with this callback starts in phase 1 (the scale is set to 0
    when the callback is attached), unless `BackupAndRestore` restores a
    checkpoint taken in phase 2.

    Example:

    ```python
    switch = keras_ssl.callbacks.PlateauPhaseSwitch(monitor="val_loss",
                                                    patience=3)
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.FixMatch())
    ssl.compile(optimizer="adam", metrics=["accuracy"])
    history = ssl.fit(x, y, unlabeled=x_unlabeled, epochs=100,
                      validation_data=(x_val, y_val), callbacks=[switch])
    history.history["phase"]  # [1, 1, ..., 2, 2, ...]
    switch.switch_epoch, switch.stopped_epoch
    ```

    Args:
        monitor: quantity to monitor. Default `"val_loss"`.
        patience: epochs without improvement that end a phase. Default 3.
        min_delta: smallest change that counts as an improvement.
            Default 0. `"auto"` (needs `validation_size`): for an accuracy
            monitor, one binomial standard error of the best value,
            `sqrt(p (1 - p) / validation_size)`: on 200 validation images
            at 50 % accuracy that is 3.5 points, larger than most
            epoch-to-epoch changes, which a delta of 0 would count as
            progress; 0 for other monitors. At the switch and at the end of
            training the best weights are restored only if the last epoch is
            worse than the best by more than this delta (within the noise,
            the later weights have trained longer).
        validation_size: images in the validation data, for
            `min_delta="auto"`.
        mode: `"auto"`, `"min"` or `"max"`, as in `keras.callbacks.EarlyStopping`.
        baseline: a value phase 1 must beat before its best is counted, or
            None. Default None.
        restore_best_weights: restore the best weights at the switch and at
            the end. Default True.
        start_from_epoch: epochs of each phase before plateaus are watched.
            Default 0.
        phase2_patience: patience of phase 2, or None for `patience`.
        stop_at_switch: end the `fit` at the switch (after restoring the
            best weights and turning the unlabeled loss on), so that phase 1
            can run as a `fit` without `unlabeled=` (supervised steps cost a
            fraction of SSL ones) and phase 2 as a second `fit` with it. The
            callback then carries its state (best value and weights, phase)
            into that next `fit` instead of starting over. Default False.
            `keras_ssl.fit_two_phase` uses it.
        verbose: 1 prints phase changes (default), 0 is silent.
    """

    def __init__(self, monitor="val_loss", patience=3, min_delta=0, mode="auto",
                 baseline=None, restore_best_weights=True, start_from_epoch=0,
                 phase2_patience=None, stop_at_switch=False, verbose=1,
                 validation_size=None):
        self.auto_delta = min_delta == "auto"
        if self.auto_delta and (isinstance(validation_size, bool) or not isinstance(
                validation_size, int) or validation_size < 1):
            raise ValueError(
                "PlateauPhaseSwitch(min_delta='auto') needs validation_size=, the number "
                f"of validation images (an integer >= 1); received {validation_size!r}."
            )
        self.validation_size = validation_size
        super().__init__(monitor, mode, baseline=baseline,
                         min_delta=0 if self.auto_delta else min_delta)
        for name, value in (("patience", patience), ("start_from_epoch", start_from_epoch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"PlateauPhaseSwitch({name}=...) must be an integer >= 0 "
                    f"(epochs); received {value!r}."
                )
        if phase2_patience is not None and (
            isinstance(phase2_patience, bool) or not isinstance(phase2_patience, int)
            or phase2_patience < 0
        ):
            raise ValueError(
                "PlateauPhaseSwitch(phase2_patience=...) must be None or an integer "
                f">= 0 (epochs); received {phase2_patience!r}."
            )
        self.patience = patience
        self.phase2_patience = patience if phase2_patience is None else phase2_patience
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = start_from_epoch
        self.stop_at_switch = bool(stop_at_switch)
        self.verbose = verbose
        self._continuing = False
        self._reset()

    def _reset(self):
        self.phase = None
        self.last_value = None
        self.best = self.baseline
        self.best_epoch = None
        self.best_phase = None
        self.best_weights = None
        self.wait = 0
        self.phase_start_epoch = None
        self.switch_epoch = None  # last epoch of phase 1
        self.switch_step = None  # optimizer steps done when phase 2 began
        self.stopped_epoch = None
        self.weights_epoch = None  # the epoch whose weights the model holds
        self.resumed_in_phase = None
        self.phases = {}  # epoch -> phase

    # ------------------------------------------------------------- resume

    STATE_KEYS = ("phase", "last_value", "best", "best_epoch", "best_phase", "wait",
                  "phase_start_epoch", "switch_epoch", "switch_step", "stopped_epoch",
                  "weights_epoch", "min_delta")

    def get_state(self):
        """The plateau counters as a JSON-able dict (best weights apart).

        With `set_state` they let a run that was interrupted continue with
        the decisions it would have taken (`fit_two_phase(backup_dir=...)`).
        """
        state = {key: _plain(getattr(self, key)) for key in self.STATE_KEYS}
        state["phases"] = {str(k): int(v) for k, v in self.phases.items()}
        return state

    def set_state(self, state, best_weights=None):
        """Load counters saved by `get_state` (and the best weights, a list of
        arrays) before the `fit` that continues the run."""
        for key in self.STATE_KEYS:
            if key in state:
                setattr(self, key, state[key])
        self.phases = {int(k): int(v) for k, v in state.get("phases", {}).items()}
        self.best_weights = None if best_weights is None else list(best_weights)
        self._continuing = True  # set_model and on_train_begin keep this state

    # ------------------------------------------------------------- set-up

    def set_model(self, model):
        variable = getattr(model, "unlabeled_loss_scale", None)
        if variable is None:
            raise ValueError(
                "PlateauPhaseSwitch needs a keras_ssl.SemiSupervisedModel: it turns "
                "the model's `unlabeled_loss_scale` variable on and off. Received "
                f"a {type(model).__name__}; wrap it: "
                "keras_ssl.SemiSupervisedModel(model, keras_ssl.FixMatch())."
            )
        super().set_model(model)
        if self._continuing:  # phase 2's fit after a stop_at_switch
            return
        # Phase 1 before any on_train_begin, so that BackupAndRestore (in
        # whatever order) can overwrite it with the checkpointed phase.
        variable.assign(0.0)

    def on_train_begin(self, logs=None):
        if self._continuing:
            self._continuing = False
            return
        self._reset()

    def _managed(self):
        """Variables whose best values are kept: all but the phase and step."""
        skip = {id(self.model.unlabeled_loss_scale)}
        if getattr(self.model, "ssl_step", None) is not None:
            skip.add(id(self.model.ssl_step))
        return [v for v in self.model.weights if id(v) not in skip]

    # -------------------------------------------------------------- epochs

    def on_epoch_begin(self, epoch, logs=None):
        if self.phase is not None:
            return
        # The first epoch of this fit: every on_train_begin (BackupAndRestore
        # included) has run, so the variable holds the checkpointed phase.
        scale = _state.unlabeled_loss_scale(self.model)
        self.phase = SEMI_SUPERVISED if scale > 0 else SUPERVISED
        self.phase_start_epoch = epoch
        if epoch > 0:
            self.resumed_in_phase = self.phase
            self._say(f"Epoch {epoch + 1}: PlateauPhaseSwitch resumed in phase "
                      f"{self.phase} ({_name(self.phase)}).")

    def on_epoch_end(self, epoch, logs=None):
        if self.phase is None:  # on_epoch_begin skipped (e.g. called directly)
            self.on_epoch_begin(epoch)
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs if logs is not None else {}
        phase = self.phase
        self.phases[epoch] = phase
        logs["phase"] = phase
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"PlateauPhaseSwitch is conditioned on metric `{self.monitor}`, which "
                f"is not available. Available metrics are: {', '.join(logs)}. Pass "
                "monitor= one of them (val_ metrics need validation_data).",
                stacklevel=2,
            )
            return
        if epoch - self.phase_start_epoch < self.start_from_epoch:
            return
        self.last_value = current
        self.weights_epoch = epoch
        self._update_auto_delta(current)
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            self.best_phase = phase
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = [ops.convert_to_numpy(v) for v in self._managed()]
        else:
            self.wait += 1
            patience = self.patience if phase == SUPERVISED else self.phase2_patience
            if self.wait >= patience:
                if phase == SUPERVISED:
                    self._switch(epoch)
                else:
                    self._stop(epoch)
                return
        last = (self.params or {}).get("epochs")
        if (last is not None and epoch + 1 >= last and self._worse_than_best(current)
                and self._restore_best()):
            # Out of epochs before a plateau: still finish on the best weights
            # (here, before any on_train_end, e.g. EMATeacher's).
            self._say(f"Epoch {epoch + 1}: PlateauPhaseSwitch: last epoch; restored the "
                      f"best weights (epoch {self.best_epoch + 1}, phase {self.best_phase}).")

    def on_train_end(self, logs=None):
        # Stopped by something else (a TimeLimit, a user's callback) before
        # the last epoch: still finish on the best weights when the last
        # epoch is worse than them.
        if (self.stop_at_switch and self._continuing) or self.stopped_epoch is not None:
            return
        last = (self.params or {}).get("epochs")
        epoch = max(self.phases) if self.phases else None
        if (epoch is None or last is None or epoch + 1 >= last
                or not self._worse_than_best(getattr(self, "last_value", None))):
            return
        if self._restore_best():
            self._say(f"PlateauPhaseSwitch: training stopped after epoch {epoch + 1}; "
                      f"restored the best weights (epoch {self.best_epoch + 1}, phase "
                      f"{self.best_phase}).")

    def switch_now(self):
        """Begin phase 2 now (e.g. when phase 1's share of a time budget is spent).

        As at a plateau: the best weights are restored, the unlabeled loss
        is turned on and, with `stop_at_switch`, the state carries into the
        next `fit`.
        """
        if self.phase == SEMI_SUPERVISED:
            return
        epoch = max(self.phases) if self.phases else 0
        self._switch(epoch, reason="phase 1's time is spent")

    def _update_auto_delta(self, current):
        if not self.auto_delta or "acc" not in self.monitor:
            return
        p = min(max(float(self.best if self.best is not None else current), 0.0), 1.0)
        delta = math.sqrt(p * (1.0 - p) / self.validation_size)
        self.min_delta = delta if self.monitor_op == ops.greater else -delta

    def _worse_than_best(self, current):
        """Whether `current` is worse than the best value by more than `min_delta`."""
        if current is None or self.best is None or self.best_epoch is None:
            return False
        return bool(self.monitor_op(self.best - self.min_delta, current))

    def _restore_best(self):
        if self.restore_best_weights and self.best_weights is not None:
            for variable, value in zip(self._managed(), self.best_weights):
                variable.assign(value)
            self.weights_epoch = self.best_epoch
            return True
        return False

    def _switch(self, epoch, reason=None):
        # Phase 2 starts from the best weights only when the last epoch is
        # worse than them by more than the delta: within the validation
        # noise, the later weights have simply trained longer.
        restored = (self._worse_than_best(getattr(self, "last_value", None))
                    and self._restore_best())
        self.model.unlabeled_loss_scale.assign(1.0)
        self.phase = SEMI_SUPERVISED
        self.phase_start_epoch = epoch + 1
        self.switch_epoch = epoch
        self.switch_step = _state.optimizer_steps(self.model)
        if self.stop_at_switch:
            self.model.stop_training = True
            self._continuing = True
        waited, self.wait = self.wait, 0
        best = "-" if self.best is None else f"{self.best:.4f}"
        why = reason or f"{self.monitor} has not improved for {waited} epoch(s)"
        self._say(
            f"Epoch {epoch + 1}: PlateauPhaseSwitch: {why} (best {best} at epoch "
            f"{self.best_epoch + 1 if self.best_epoch is not None else '-'})"
            + ("; best weights restored" if restored else "")
            + "; phase 2: unlabeled loss on."
        )

    def _stop(self, epoch):
        self.model.stop_training = True
        self.stopped_epoch = epoch
        restored = self._restore_best()
        best = (f"best {self.best:.4f} at epoch {self.best_epoch + 1}, phase "
                f"{self.best_phase}" if self.best_epoch is not None else "no best")
        note = ""
        if self.best_phase == SUPERVISED:
            note = " Phase 2 never beat phase 1: the supervised weights are kept."
        self._say(
            f"Epoch {epoch + 1}: PlateauPhaseSwitch: {self.monitor} has not improved "
            f"for {self.wait} epoch(s) in phase 2; stopping ({best})"
            + ("; best weights restored." if restored else ".") + note
        )

    def _say(self, message):
        if self.verbose:
            _state.print_msg("\n" + message)


def _plain(value):
    """A JSON-able copy of a counter (numpy and tensor scalars as floats)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return float(ops.convert_to_numpy(value))


def _name(phase):
    return "supervised" if phase == SUPERVISED else "semi-supervised"
