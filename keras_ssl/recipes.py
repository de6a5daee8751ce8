"""`fit_two_phase`: supervised until a plateau, then SSL until a plateau, in one call."""

import dataclasses
import json
import os
import shutil
import time

import keras
import numpy as np

from keras_ssl import callbacks as ssl_callbacks
from keras_ssl.callbacks.phase_switch import SEMI_SUPERVISED
from keras_ssl.model import SemiSupervisedModel


@dataclasses.dataclass
class TwoPhaseReport:
    """What `fit_two_phase` did: history, phase boundaries, final metrics, time.

    Attributes:
        model: the trained `SemiSupervisedModel` (its `.model` is the
            classifier, trained in place).
        history: dict of per-epoch lists, as `History.history`, with a
            `phase` entry (1 supervised, 2 semi-supervised).
        phases: the phase of each epoch.
        switch_epoch: last epoch (0-based) of phase 1, or None if phase 2
            never began.
        switch_step: optimizer steps done when phase 2 began, or None.
        stopped_epoch: epoch at which phase 2's plateau stopped training, or
            None if `epochs` ran out first.
        best_epoch, best_value, best_phase: the best monitored value of the
            run.
        kept_epoch: the epoch whose weights the model holds at the end: the
            best one, or the last when it is within `min_delta` of the best.
        epochs_run: epochs trained. steps_run: optimizer steps at the end.
        final_metrics: `evaluate` results after training, BatchNorm
            statistics recomputed: `val_*` on the validation data and
            `test_*` on `test_data` if given.
        wall_time_s: seconds spent in `fit` and the final evaluation.
        monitor: the monitored quantity.
    """

    model: object
    history: dict
    phases: list
    switch_epoch: object
    switch_step: object
    stopped_epoch: object
    best_epoch: object
    best_value: object
    best_phase: object
    kept_epoch: object
    epochs_run: int
    steps_run: object
    final_metrics: dict
    wall_time_s: float
    monitor: str

    @property
    def boundaries(self):
        """Each phase's first and last epoch (0-based) and step range."""
        result = []
        for phase in (1, 2):
            epochs = [e for e, p in enumerate(self.phases) if p == phase]
            if not epochs:
                continue
            if phase == 1:
                steps = (0, self.switch_step if self.switch_step is not None else self.steps_run)
            else:
                steps = (self.switch_step or 0, self.steps_run)
            result.append({"phase": phase, "first_epoch": epochs[0],
                           "last_epoch": epochs[-1], "steps": steps})
        return result

    def plot(self, path):
        """Write loss and accuracy curves with the phase boundary to a PNG."""
        from keras_ssl import plots

        return plots.plot_two_phase(self, path)

    def summary(self):
        """A few lines for a log or a notebook."""
        lines = [(f"two-phase run: {self.epochs_run} epochs, {self.steps_run} steps, "
                  f"{self.wall_time_s:.1f} s")]
        for b in self.boundaries:
            name = "supervised" if b["phase"] == 1 else "semi-supervised"
            lines.append(f"  phase {b['phase']} ({name}): epochs {b['first_epoch'] + 1}-"
                         f"{b['last_epoch'] + 1}, steps {b['steps'][0]}-{b['steps'][1]}")
        if self.best_epoch is not None:
            lines.append(f"  best {self.monitor} {self.best_value:.4f} at epoch "
                         f"{self.best_epoch + 1} (phase {self.best_phase})")
        if self.final_metrics:
            lines.append("  final: " + ", ".join(
                f"{k} {v:.4f}" for k, v in sorted(self.final_metrics.items())))
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def fit_two_phase(model, x, y, unlabeled, validation_data, *, algorithm=None,
                  unlabeled_ratio=None, epochs=None, steps_per_epoch=None, batch_size=32,
                  monitor="val_loss", patience=3, phase2_patience=None, min_delta="auto",
                  optimizer="adam", loss=None, metrics=("accuracy",), ema_decay=None,
                  batchnorm_warmup=True, batchnorm_steps=20, test_data=None,
                  callbacks=None, verbose=1, minutes=None, phase1_share=0.25,
                  backup_dir=None):
    """Train supervised until a plateau, then semi-supervised, in one call.

    The tutorial's flow without assembling the pieces: wrap the classifier
    in a `SemiSupervisedModel`, train phase 1 supervised (a `fit` without the
    unlabeled images: supervised steps, a fraction of an SSL step's cost)
    until `monitor` stops improving (`PlateauPhaseSwitch`), restore its best
    weights (unless the last ones are within `min_delta` of them), then
    train phase 2 with the unlabeled images (a second `fit`, continuing the
    epoch count) until it stops improving, and restore the best weights of
    the run. BatchNorm statistics
    are recomputed exactly (`BatchNormWarmup`) when training begins, at the
    switch and before every validation, and once more before the final
    evaluation; with `ema_decay`, validation and the final model use the EMA
    teacher's weights (`EMATeacher`). With an algorithm that keeps a
    pseudo-label table (`SelfTraining`, the default for finite inputs) the
    second phase keeps the moving statistics that training leaves: they are
    recomputed at the switch only, and not at the end when the best weights
    come from that phase (its table labels and scores best with them).

    Example:

    ```python
    report = keras_ssl.fit_two_phase(
        classifier, x_labeled, y_labeled, unlabeled=x_unlabeled,
        validation_data=(x_val, y_val), algorithm=keras_ssl.FixMatch(),
        unlabeled_ratio=3, steps_per_epoch=50, test_data=(x_test, y_test))
    print(report.summary())
    report.plot("two_phase.png")
    report.final_metrics["test_accuracy"], report.switch_epoch
    ```

    Args:
        model: a Keras classifier (wrapped for you) or a
            `keras_ssl.SemiSupervisedModel` (used as it is; then leave
            `algorithm` and `unlabeled_ratio` unset).
        x, y: the labeled data, as `SemiSupervisedModel.fit` takes them.
        unlabeled: the unlabeled images (numpy array, `tf.data.Dataset` or
            `PyDataset`).
        validation_data: `(x_val, y_val)`; plateaus are detected on it.
        algorithm: a `keras_ssl.Algorithm`; None for `SemiSupervisedModel`'s
            default (`keras_ssl.SelfTraining()` when `unlabeled` is a numpy
            array, `keras_ssl.FixMatch(threshold=0.8)` for a stream).
        unlabeled_ratio: unlabeled images per labeled image in a batch;
            None for the model's default.
        epochs: upper bound on epochs of both phases together. Default
            None: 100 (the plateaus normally end training earlier), or no
            bound with `minutes` (the budget ends training).
        steps_per_epoch: steps per epoch. With a small labeled set, set it
            (e.g. 50): one pass over 50 labels is two steps, too short to
            judge a plateau.
        batch_size: labeled batch size. Default 32.
        monitor, patience, phase2_patience, min_delta: as in
            `PlateauPhaseSwitch`. Defaults `"val_loss"`, 3, None, `"auto"`
            (for an accuracy monitor, one binomial standard error of the
            validation accuracy: a small validation split's noise is not
            taken for progress; 0 for a loss). The
            unlabeled loss pays late (once the teacher is confident on many
            images) and the validation loss is noisy: give phase 2 a longer
            patience than phase 1, and consider `monitor="val_accuracy"`. In
            the tutorial example at full scale (BENCHMARKS.md) a patience of
            3 epochs of 100 steps ended the SSL phase after 300 steps.
        optimizer, loss, metrics: passed to `compile` when the model is not
            compiled yet. Defaults `"adam"`, the model's default loss,
            `("accuracy",)`.
        ema_decay: None (default) or a decay such as 0.99: validate with, and
            finish on, an EMA teacher of the weights.
        batchnorm_warmup: recompute BatchNorm statistics (default True).
        batchnorm_steps: batches per recomputation. Default 20.
        test_data: optional `(x_test, y_test)` evaluated once at the end.
        callbacks: more Keras callbacks (e.g. `CSVLogger(append=True)`); they
            are passed to both phases' `fit` calls.
        verbose: passed to `fit` and the phase messages. Default 1.
        minutes: a wall-time budget for the whole call (both phases and the
            final evaluation), or None. With it, phase 1 ends at its plateau
            or when `phase1_share` of the budget is spent, whichever comes
            first, and phase 2 trains until the budget is spent (its plateau
            rule is off unless `phase2_patience` is given); training stops
            mid-epoch when what is left is what the run's end will take (its
            last validation and the final evaluation, timed on the epochs
            so far; at least 3 % of the budget), and the best weights are restored
            only if the last epoch is worse than them by more than
            `min_delta`.
        phase1_share: the largest share of `minutes` phase 1 may take.
            Default 0.25.
        backup_dir: a folder for a checkpoint at the end of every epoch
            (weights and optimizer through `keras.callbacks.BackupAndRestore`,
            plus the phase, the plateau counters, the history and the time
            spent). A call with the same folder after an interruption (e.g.
            Ctrl-C) continues from the last completed epoch, in its phase and
            with what is left of `minutes`; the folder is deleted when the
            call returns. None (default): no checkpoints.

    Returns:
        A `TwoPhaseReport`.
    """
    if validation_data is None and str(monitor).startswith("val_"):
        raise ValueError(
            f"fit_two_phase(validation_data=...) is needed to monitor {monitor!r}; "
            "received None. Pass validation_data=(x_val, y_val), or monitor a "
            "training metric such as monitor='loss'."
        )
    if isinstance(model, SemiSupervisedModel):
        if algorithm is not None or unlabeled_ratio is not None:
            raise ValueError(
                "fit_two_phase(model=...) received a SemiSupervisedModel, which has "
                "its own algorithm and unlabeled_ratio; received also "
                f"algorithm={algorithm!r}, unlabeled_ratio={unlabeled_ratio!r}. "
                "Pass a plain classifier, or leave those two unset."
            )
        ssl = model
    elif isinstance(model, keras.Model):
        kwargs = {} if unlabeled_ratio is None else {"unlabeled_ratio": unlabeled_ratio}
        if ema_decay is not None:
            kwargs["ema_decay"] = ema_decay
        ssl = SemiSupervisedModel(model, algorithm, **kwargs)
    else:
        raise TypeError(
            "fit_two_phase(model=...) must be a keras.Model or a "
            f"keras_ssl.SemiSupervisedModel; received {type(model).__name__}."
        )
    if not ssl.compiled:
        ssl.compile(optimizer=optimizer, loss=loss,
                    metrics=list(metrics) if metrics else None)

    if epochs is None:
        epochs = 100 if minutes is None else 10 ** 6
    backup = None if backup_dir is None else _TwoPhaseBackup(backup_dir)
    resumed = None if backup is None else backup.load_state()
    start = time.perf_counter() - (resumed["elapsed_s"] if resumed else 0.0)
    if minutes is not None and not float(minutes) > 0:
        raise ValueError(f"fit_two_phase(minutes=...) must be > 0; received {minutes!r}.")
    if not 0.0 < float(phase1_share) < 1.0:
        raise ValueError(
            f"fit_two_phase(phase1_share=...) must be in (0, 1); received {phase1_share!r}."
        )
    delta = {"min_delta": min_delta}
    if min_delta == "auto":
        size = _count_images(validation_data) if "acc" in str(monitor) else None
        delta = {"min_delta": "auto", "validation_size": size} if size else {"min_delta": 0}
    if minutes is not None and phase2_patience is None:
        phase2_patience = 10 ** 9  # phase 2 runs until the budget is spent
    switch = ssl_callbacks.PlateauPhaseSwitch(
        monitor=monitor, patience=patience, phase2_patience=phase2_patience,
        restore_best_weights=True, stop_at_switch=True, verbose=1 if verbose else 0,
        **delta,
    )
    logs, done = {}, 0
    if resumed:
        switch.set_state(resumed["switch"], backup.load_best_weights())
        logs = {k: list(v) for k, v in resumed["history"].items()}
        done = int(resumed["epochs"])
        if verbose:
            print(f"fit_two_phase: resuming after epoch {done} (phase {resumed['phase']}) "
                  f"from {backup_dir}", flush=True)
    if backup is not None:
        backup.attach(switch, start, {k: list(v) for k, v in logs.items()})
    # An algorithm with a pseudo-label table (SelfTraining, the default for
    # array inputs) trains mostly on strong views, and labels and scores best
    # with the moving statistics that training leaves (docs/experiments.md, 3
    # seeds): in its phase, statistics are recomputed at the switch only.
    ssl._choose_default_algorithm(x, unlabeled)
    keep_moving = bool(getattr(ssl.algorithm, "uses_table", False))
    warm = warm2 = None
    if batchnorm_warmup:
        images = _warmup_images(x, unlabeled)

        def warmup(before_validation):
            return ssl_callbacks.BatchNormWarmup(
                images, steps=batchnorm_steps, batch_size=batch_size,
                before_validation=before_validation)

        warm = warmup(True)
        warm2 = warmup(False) if keep_moving else warm

    def chain(last_phase):
        # Order: EMA swap, then the switch, then BatchNorm warm-up (it sees
        # the swapped-in weights), then the user's callbacks.
        items = []
        if ema_decay is not None:
            items.append(ssl_callbacks.EMATeacher(keep_ema_weights=last_phase))
        items.append(switch)
        if warm is not None:
            items.append(warm2 if last_phase else warm)
        if backup is not None:
            items.append(backup)  # after the switch: it saves the switch's decision
        return items + list(callbacks or [])

    # One TimeLimit for both phases, counted from the start of the run: it
    # ends phase 1 at `phase1_share` of `minutes`, and the last phase when
    # what is left is what the run's end takes (`_Budget`).
    limit = None if minutes is None else _Budget(
        float(minutes), start, ends=2 if test_data is None else 3)

    def budget(share):
        if limit is None:
            return []
        limit.share = share
        return [limit]

    # Phase 1 is a fit without the unlabeled images: supervised steps, which
    # cost a fraction of an SSL step. The switch ends it at the plateau
    # (best weights restored, unlabeled loss on); phase 2 is a second fit,
    # with them, continuing the epoch count.
    def extend(history):
        nonlocal done
        for key, values in history.items():
            logs.setdefault(key, [None] * done)
            logs[key] += list(values)
        done = max([len(v) for v in logs.values()] + [done])
        for values in logs.values():  # keys logged in one phase only
            values += [None] * (done - len(values))

    in_phase_1 = not resumed or resumed["phase"] == 1
    if in_phase_1:
        first = ssl.fit(
            x, y, batch_size=batch_size, epochs=epochs, steps_per_epoch=steps_per_epoch,
            initial_epoch=done, validation_data=validation_data,
            callbacks=chain(False) + budget(phase1_share if unlabeled is not None else 1.0),
            verbose=verbose,
        )
        extend(first.history)
        if minutes is not None and unlabeled is not None and switch.switch_epoch is None:
            switch.switch_now()  # phase 1's share of the budget is spent
            if backup is not None:
                backup.save(done)  # a resume starts in phase 2
    if switch.switch_epoch is not None and done < epochs and (
            minutes is None or time.perf_counter() - start < 0.95 * 60 * float(minutes)):
        second = ssl.fit(
            x, y, unlabeled=unlabeled, batch_size=batch_size, epochs=epochs,
            initial_epoch=done, steps_per_epoch=steps_per_epoch,
            validation_data=validation_data, callbacks=chain(True) + budget(1.0),
            verbose=verbose,
        )
        extend(second.history)
    elif ema_decay is not None:
        # No phase 2 ran: still finish on the EMA weights, as promised.
        for variable, average in zip(ssl.teacher_sources, ssl.teacher_weights):
            variable.assign(average.value)
    ended_in_table_phase = keep_moving and switch.best_phase == SEMI_SUPERVISED
    if warm is not None and not ended_in_table_phase:
        # The restored best weights (EMA ones with ema_decay) get exact
        # statistics of their own.
        warm.recompute("final")
    final = {}
    if validation_data is not None:
        final.update(_evaluate(ssl, validation_data, batch_size, "val_"))
    if test_data is not None:
        final.update(_evaluate(ssl, test_data, batch_size, "test_"))
    wall = time.perf_counter() - start

    if backup is not None:
        backup.delete()
    phases = [int(p) for p in logs.get("phase", []) if p is not None]
    steps = None
    try:
        steps = int(keras.ops.convert_to_numpy(ssl.optimizer.iterations))
    except (AttributeError, TypeError, ValueError):
        pass
    return TwoPhaseReport(
        model=ssl, history=logs, phases=phases, switch_epoch=switch.switch_epoch,
        switch_step=switch.switch_step, stopped_epoch=switch.stopped_epoch,
        best_epoch=switch.best_epoch, best_value=_as_float(switch.best),
        best_phase=switch.best_phase, kept_epoch=switch.weights_epoch,
        epochs_run=len(phases), steps_run=steps,
        final_metrics=final, wall_time_s=wall, monitor=monitor,
    )


class _Budget(ssl_callbacks.TimeLimit):
    """`fit_two_phase`'s `TimeLimit`, counted from `start`, for `share` of
    `minutes`. It times each epoch's end (from its last step to
    `on_epoch_end`: validation, BatchNorm statistics, checkpoints), and in
    the last phase (`share` 1) stops stepping when what is left is `ends`
    such epoch ends (that epoch's validation, the final evaluations): at
    least 3 % of the budget, at most half of it."""

    def __init__(self, minutes, start, ends):
        super().__init__(minutes, verbose=0, mid_epoch=True, started_at=start)
        self.budget, self.ends, self.share = minutes, ends, 1.0
        self.last_step = self.tail = None

    def _keep_back(self):
        keep = 0.0
        if self.share >= 1.0:
            measured = 0.0 if self.tail is None else self.ends * self.tail / 60.0
            keep = min(max(0.03 * self.budget, measured), 0.5 * self.budget)
        self.minutes = self.share * self.budget - keep

    def on_train_batch_end(self, batch, logs=None):
        self.last_step = time.perf_counter()
        self._keep_back()
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.last_step is not None:
            self.tail = time.perf_counter() - self.last_step
        self._keep_back()
        super().on_epoch_end(epoch, logs)


def saved_state(backup_dir):
    """What `fit_two_phase(backup_dir=...)` saved after its last completed epoch
    (a dict: `epochs`, `phase`, `elapsed_s`, the plateau counters and the
    history), or None when the folder holds no interrupted run."""
    path = os.path.join(backup_dir, _TwoPhaseBackup.STATE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


class _TwoPhaseBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` (weights, optimizer, epoch) plus what `fit_two_phase`
    needs to continue a run: the phase, the plateau counters and best
    weights, the history and the seconds spent (`two_phase.json`,
    `best_weights.npz`). It restores only in the first `fit` of a resumed
    call, and keeps its files between the two phases' fits."""

    STATE, BEST = "two_phase.json", "best_weights.npz"

    def __init__(self, backup_dir):
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=True,
                         delete_checkpoint=False)
        self.restore_pending = False

    def _path(self, name):
        return os.path.join(self.backup_dir, name)

    def load_state(self):
        """The saved state (a dict), or None when there is nothing to resume."""
        state = saved_state(self.backup_dir)
        self.restore_pending = state is not None and os.path.exists(self._weights_path)
        return state if self.restore_pending else None

    def load_best_weights(self):
        if not os.path.exists(self._path(self.BEST)):
            return None
        with np.load(self._path(self.BEST)) as saved:
            return [saved[f"w{i}"] for i in range(len(saved.files))]

    def attach(self, switch, start, history):
        self.switch, self.start, self.history = switch, start, history

    def on_train_begin(self, logs=None):
        if self.restore_pending:
            self.restore_pending = False
            super().on_train_begin(logs)

    def on_train_end(self, logs=None):
        # The restore set the model's initial epoch for this fit; the next
        # fit passes its own.
        self.model._initial_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            values = self.history.setdefault(key, [])
            values += [None] * (epoch - len(values))
            values.append(_as_float(value))
        self.save(epoch + 1)

    def save(self, epochs):
        """Checkpoint the model and the state after `epochs` epochs."""
        self._current_epoch = epochs
        self._save_model()
        state = {"epochs": int(epochs), "phase": 2 if self.switch.switch_epoch is not None
                 else 1, "elapsed_s": time.perf_counter() - self.start,
                 "switch": self.switch.get_state(),
                 "history": {k: v[:epochs] for k, v in self.history.items()}}
        best = (self.switch.best_epoch, self.switch.best_phase)
        if self.switch.best_weights is not None and best != getattr(self, "_saved_best", None):
            self._saved_best = best  # written again only when the best changes
            temporary = self._path("best_weights.tmp.npz")
            np.savez(temporary, **{f"w{i}": w for i, w in enumerate(self.switch.best_weights)})
            os.replace(temporary, self._path(self.BEST))
        temporary = self._path(self.STATE + ".tmp")
        with open(temporary, "w") as f:
            json.dump(state, f)
        os.replace(temporary, self._path(self.STATE))

    def delete(self):
        shutil.rmtree(self.backup_dir, ignore_errors=True)


def _warmup_images(x, unlabeled):
    """Images for BatchNorm warm-up: the unlabeled ones when they are an array."""
    if unlabeled is None:
        return x
    if isinstance(unlabeled, np.ndarray):
        if isinstance(x, np.ndarray):
            return np.concatenate([x.astype(unlabeled.dtype), unlabeled])
        return unlabeled
    return x if isinstance(x, np.ndarray) else unlabeled


def _count_images(data):
    """Images in validation data: `(x, y)` arrays, or a finite dataset of batches."""
    if data is None:
        return None
    if isinstance(data, (tuple, list)):
        return len(data[0])
    try:
        return int(sum(len(_first(batch)) for batch in data))
    except TypeError:
        return None


def _first(batch):
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _evaluate(model, data, batch_size, prefix):
    if isinstance(data, (tuple, list)):
        results = model.evaluate(*data, batch_size=batch_size, verbose=0, return_dict=True)
    else:
        results = model.evaluate(data, verbose=0, return_dict=True)
    return {prefix + k: float(v) for k, v in results.items()}


def _as_float(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
