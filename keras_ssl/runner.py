"""Folders in, a trained classifier and a report out: what `keras-ssl train` and
`keras-ssl predict` run.

`train_from_folders` reads the folders (`keras_ssl.folders`), chooses the
settings the user left open from the data and prints them, trains with the
two-phase recipe (`fit_two_phase`: supervised until the validation accuracy
plateaus, then SSL until it plateaus again), optionally trains the supervised
baseline at the same budget, and writes `model.keras` (plain Keras),
`class_names.json`, `run.json`, `report.md` and PNG charts. `predict_folder`
classifies a folder of images with such a model and writes a CSV.
"""

import csv
import dataclasses
import json
import os
import shutil
import sys
import time

import keras
import numpy as np

from keras_ssl import callbacks as ssl_callbacks
from keras_ssl import folders, models, plots
from keras_ssl.checks import InputError
from keras_ssl.recipes import TwoPhaseReport, fit_two_phase, saved_state

MAX_AUTO_SIDE = 128  # larger images are resized to this by default (CPU budgets)
PATIENCE = 5  # epochs without a better validation accuracy before a phase ends
LEARNING_RATE, WEIGHT_DECAY = 0.03, 5e-3  # SGD, as the CIFAR-10 protocol
WRITE_MINUTES = 0.25  # kept back from --minutes to save the model, report and charts


def _say(message, verbose):
    if verbose:
        print(message, flush=True)


def choose_settings(labeled, unlabeled, image_size=None, batch_size=None,
                    unlabeled_ratio=None, validation_split=0.2, model="cnn"):
    """The settings left open, chosen from the scanned folders.

    Returns a dict: image_size, batch_size, unlabeled_ratio, steps_per_epoch
    and the counts they were chosen from.
    """
    n_labeled = len(labeled.files)
    n_train = n_labeled - int(n_labeled * validation_split)
    if image_size is None:
        height, width = labeled.size
        image_size = (height, width)
        if max(height, width) > MAX_AUTO_SIDE:
            image_size = (MAX_AUTO_SIDE, MAX_AUTO_SIDE)
    elif isinstance(image_size, int):
        image_size = (image_size, image_size)
    if batch_size is None:
        batch_size = int(min(32, max(4, n_train // 8)))
    if unlabeled_ratio is None:
        if unlabeled is None:
            unlabeled_ratio = 1
        else:
            # FixMatch uses 7; on a CPU 3 keeps a step affordable.
            unlabeled_ratio = int(min(3, max(1, len(unlabeled.files) // max(1, n_train))))
    steps_per_epoch = int(max(20, n_train // batch_size))
    return {"image_size": tuple(int(v) for v in image_size), "batch_size": batch_size,
            "unlabeled_ratio": unlabeled_ratio, "steps_per_epoch": steps_per_epoch,
            "model": model, "labeled_images": n_labeled, "train_images": n_train,
            "validation_images": n_labeled - n_train,
            "unlabeled_images": 0 if unlabeled is None else len(unlabeled.files),
            "classes": len(labeled.class_names)}


def _optimizer(minutes, settings, backup_dir=None):
    """`fit_two_phase`'s optimizer and learning-rate callbacks for one run.

    SGD with Nesterov momentum, decoupled weight decay and a cosine decay of
    the learning rate over the run: over its minutes (`CosineDecayByTime`)
    with a time budget, else over its epoch bound. The recipe of the CIFAR-10
    protocol in BENCHMARKS.md.
    """
    if minutes:
        rate = LEARNING_RATE
        # A resumed run continues its schedule where it stopped.
        state = None if backup_dir is None else saved_state(backup_dir)
        spent = float(state["elapsed_s"]) if state else 0.0
        decay = [ssl_callbacks.CosineDecayByTime(minutes, LEARNING_RATE,
                                                 started_at=time.perf_counter() - spent)]
    else:
        rate = keras.optimizers.schedules.CosineDecay(
            LEARNING_RATE, settings["epochs"] * settings["steps_per_epoch"])
        decay = []
    optimizer = keras.optimizers.SGD(rate, momentum=0.9, nesterov=True,
                                     weight_decay=WEIGHT_DECAY)
    return {"optimizer": optimizer, "callbacks": decay}


def _build_model(name, input_shape, num_classes):
    """A model by name, or a `.keras` file checked against the data before training."""
    if not str(name).endswith(".keras"):
        return models.build(name, input_shape, num_classes)
    if not os.path.exists(name):
        raise InputError(f"--model {name!r}: the file does not exist.")
    net = keras.saving.load_model(name, compile=False)
    _check_model(net, name, input_shape, num_classes)
    return net


def _check_model(net, name, input_shape=None, num_classes=None):
    """A saved model must take one image input of the data's shape (or a flexible
    one) and have one output per class; the error says how to fix it."""
    inputs = getattr(net, "inputs", None) or []
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        shapes = [tuple(i.shape) for i in inputs]
        raise InputError(
            f"--model {name!r} must take one batch of images (batch, height, width, "
            f"channels); its inputs are {shapes}."
        )
    expected = tuple(inputs[0].shape[1:])
    if input_shape is not None and any(
            e is not None and e != g for e, g in zip(expected, input_shape)):
        raise InputError(
            f"--model {name!r} takes images of shape {expected}, but the images are read as "
            f"{tuple(input_shape)}. Pass --image-size {expected[0]} and --color-mode "
            f"{'grayscale' if expected[2] == 1 else 'rgb'} to match."
        )
    outputs = getattr(net, "outputs", None) or []
    width = outputs[0].shape[-1] if len(outputs) == 1 else None
    if num_classes is not None and width != num_classes:
        raise InputError(
            f"--model {name!r} has {width if width is not None else len(outputs)} "
            f"output{'s' if (width or len(outputs)) != 1 else ''}, but "
            f"the labeled folder has {num_classes} classes. Give it a new head with "
            f"{num_classes} outputs, e.g. "
            f"keras.Model(net.input, keras.layers.Dense({num_classes})(net.layers[-2].output))."
        )


def _one_based(epoch):
    return None if epoch is None else int(epoch) + 1


def _predict_labels(model, images, labels, batch_size=256):
    predictions = [np.argmax(_probabilities(model, images[i:i + batch_size]), axis=-1)
                   for i in range(0, len(images), batch_size)]
    return np.asarray(labels), np.concatenate(predictions)


def _per_class(labels, predictions, count):
    return [float(np.mean(predictions[labels == c] == c)) if np.any(labels == c) else 0.0
            for c in range(count)]


CHECKPOINT = ".checkpoint"  # inside the output folder while a run trains


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while `train_from_folders` trained; the message says what was
    saved and how to continue."""


def checkpoint_dir(out_dir):
    """Where a run being trained into `out_dir` keeps its checkpoints."""
    return os.path.join(out_dir, CHECKPOINT)


def saved_run(out_dir):
    """The options of an interrupted run in `out_dir` (a dict), or None."""
    path = os.path.join(checkpoint_dir(out_dir), "command.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


# Options that must match for a run to be resumed (the others, such as
# verbosity, may change).
RESUME_KEYS = ("labeled_dir", "unlabeled_dir", "model", "image_size", "epochs", "minutes",
               "baseline", "algorithm", "batch_size", "unlabeled_ratio",
               "validation_split", "color_mode", "flip", "seed")


def _resume_point(out_dir):
    """'epoch N of the SSL run' for the newest checkpoint in `out_dir`, or None."""
    for name, label in (("baseline", "the supervised baseline"), ("ssl", "the run")):
        state = saved_state(os.path.join(checkpoint_dir(out_dir), name))
        if state is not None:
            return f"epoch {state['epochs']} of {label}"
    if os.path.exists(os.path.join(checkpoint_dir(out_dir), "ssl_done", "result.json")):
        return "the finished run (the baseline had not finished an epoch)"
    return None


def train_from_folders(labeled_dir, unlabeled_dir, out_dir, model="cnn", image_size=None,
                       epochs=None, minutes=None, baseline=False, algorithm=None,
                       batch_size=None, unlabeled_ratio=None, validation_split=0.2,
                       color_mode="auto", flip=True, seed=0, verbose=1, resume=True):
    """Train a classifier on a labeled folder plus an unlabeled folder; write its report.

    Example:

    ```python
    summary = keras_ssl.runner.train_from_folders(
        "photos/labeled", "photos/unlabeled", "run1", model="cnn", minutes=10,
        baseline=True)
    summary["ssl"]["val_accuracy"], summary["files"]["model"]
    ```

    Args:
        labeled_dir: one sub-folder of images per class.
        unlabeled_dir: a folder of images, or None (supervised only).
        out_dir: where `model.keras`, `class_names.json`, `run.json`,
            `report.md` and the charts are written.
        model: "cnn", "mobilenet", "efficientnet" (from scratch), or a path
            to a `.keras` model that takes raw 0-255 pixels.
        image_size: int or `(height, width)`; None: the labeled images'
            most common size, at most 128.
        epochs: upper bound on epochs (default 100; plateaus end earlier).
        minutes: wall-time budget of the whole call (reading, training, the
            baseline and writing the outputs), or None. Phase 1 takes at most
            a quarter of a run's share, phase 2 the rest (`fit_two_phase`).
        baseline: also train the supervised baseline with the same recipe
            and budget (half of `minutes` each, else the SSL run's number of
            epochs).
        algorithm: an algorithm name or instance; None for the library's
            default.
        batch_size, unlabeled_ratio: None to choose them from the data.
        validation_split: fraction of the labeled images held out to detect
            plateaus and to report on.
        color_mode: "auto", "rgb" or "grayscale".
        flip: whether the views flip images horizontally (off for text,
            digits, anything not mirror-symmetric).
        seed: random seed of the split, the model and the training.
        verbose: 1 for progress bars and messages, 0 for none.
        resume: training checkpoints every epoch into `out_dir/.checkpoint`
            (removed when the outputs are written). If a run with the same
            options was interrupted there (Ctrl-C: `Interrupted`), True
            (default) continues it from its last completed epoch, with what
            was left of `minutes`; False starts over. A run with other
            options is refused.

    Returns:
        The summary dict also written to `run.json`.
    """
    from keras_ssl import algorithms

    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    labeled = folders.scan(labeled_dir, labeled=True)
    unlabeled = None
    if unlabeled_dir is not None:
        inside = folders._inside(labeled_dir, unlabeled_dir)
        unlabeled = folders.scan(unlabeled_dir, labeled=False,
                                 exclude=labeled_dir if inside else None)
    settings = choose_settings(labeled, unlabeled, image_size, batch_size, unlabeled_ratio,
                               validation_split, model)
    if not validation_split:
        raise InputError("train_from_folders needs a validation split (> 0) to detect "
                         "plateaus and report accuracy; pass validation_split=0.2.")
    # Every image decoded once into memory: the default algorithm's
    # pseudo-label table draws from every unlabeled image by index.
    data = folders.from_scans(labeled, unlabeled, settings["image_size"], color_mode,
                              validation_split, settings["batch_size"], seed=seed,
                              verbose=verbose)
    _say("keras-ssl train: " + data.summary().replace("\n", "\n  "), verbose)
    for advice in data.warnings():
        _say(f"keras-ssl train: warning: {advice}", True)
    settings.update(train_images=data.counts["train"],
                    validation_images=data.counts["validation"],
                    unlabeled_images=data.counts.get("unlabeled", 0),
                    duplicates_dropped=data.duplicates,
                    files={name: {"images": len(scan.files), "formats": dict(scan.formats),
                                  "skipped": {why: len(paths)
                                              for why, paths in scan.skipped.items()},
                                  "excluded": scan.excluded}
                           for name, scan in (("labeled", data.labeled_scan),
                                              ("unlabeled", data.unlabeled_scan))
                           if scan is not None})
    if isinstance(algorithm, str) or algorithm is None:
        algorithm = (algorithms.default(flip=flip) if algorithm is None
                     else algorithms.get(algorithm, flip=flip))
    settings.update(channels=data.channels,
                    algorithm=(repr(algorithm) if unlabeled_dir is not None
                               else "none (no unlabeled images)"),
                    # With a time budget the epochs are not the bound.
                    epochs=epochs or (10 ** 4 if minutes else 100), minutes=minutes,
                    baseline=bool(baseline),
                    validation_split=validation_split, seed=seed, flip=bool(flip),
                    labeled_dir=os.fspath(labeled_dir),
                    unlabeled_dir=None if unlabeled_dir is None else os.fspath(unlabeled_dir))
    _say("keras-ssl train: settings (chosen from the data where not given)", verbose)
    for key in ("classes", "labeled_images", "train_images", "validation_images",
                "unlabeled_images", "image_size", "channels", "model", "batch_size",
                "unlabeled_ratio", "steps_per_epoch", "algorithm", "epochs", "minutes"):
        _say(f"  {key:>18}: {settings[key]}", verbose)

    input_shape = tuple(settings["image_size"]) + (data.channels,)
    runs = 2 if baseline else 1
    command = {"labeled_dir": os.path.abspath(labeled_dir),
               "unlabeled_dir": None if unlabeled_dir is None else os.path.abspath(unlabeled_dir),
               "model": str(model), "image_size": list(settings["image_size"]),
               "epochs": epochs, "minutes": minutes, "baseline": bool(baseline),
               "algorithm": repr(algorithm), "batch_size": settings["batch_size"],
               "unlabeled_ratio": settings["unlabeled_ratio"],
               "validation_split": validation_split, "color_mode": color_mode,
               "flip": bool(flip), "seed": seed}
    # A --model that does not fit the data is refused before anything is written.
    net = _build_model(model, input_shape, len(data.class_names))
    saved = saved_run(out_dir)
    resuming = saved is not None and resume
    if resuming:
        changed = [key for key in RESUME_KEYS if saved.get(key) != command.get(key)]
        if changed:
            raise InputError(
                f"{out_dir} holds an interrupted run with other options ("
                + ", ".join(f"{key}: {saved.get(key)!r} there, {command.get(key)!r} now"
                            for key in changed)
                + "); give the same options to continue it, or --overwrite to start over."
            )
        settings["resumed_from"] = _resume_point(out_dir) or "no epoch had finished"
        _say(f"keras-ssl train: resuming the interrupted run in {out_dir} "
             f"({settings['resumed_from']}); wall times below count this part only", True)
    else:
        shutil.rmtree(checkpoint_dir(out_dir), ignore_errors=True)
    created = not os.path.exists(out_dir)
    os.makedirs(checkpoint_dir(out_dir), exist_ok=True)
    with open(os.path.join(checkpoint_dir(out_dir), "command.json"), "w") as f:
        json.dump(command, f, indent=1)
    try:
        return _train_and_write(**locals())
    except InputError:
        if not resuming:  # refused before training: leave nothing behind
            shutil.rmtree(checkpoint_dir(out_dir), ignore_errors=True)
            if created and not os.listdir(out_dir):
                os.rmdir(out_dir)
        raise
    except KeyboardInterrupt as interrupt:
        point = _resume_point(out_dir)
        if point is None:
            raise Interrupted("interrupted before the first epoch ended; nothing was "
                              "saved.") from interrupt
        raise Interrupted(
            f"interrupted; {point} is saved in {checkpoint_dir(out_dir)}. Run the same "
            "command again (or add --resume) to continue from there."
        ) from interrupt


def _train_and_write(*, start, data, settings, algorithm, model, net, minutes, baseline,
                     input_shape, runs, out_dir, seed, verbose, **_):
    """The training part of `train_from_folders`: the run, the baseline, the outputs."""
    done_dir = os.path.join(checkpoint_dir(out_dir), "ssl_done")
    after_run = 0.0  # seconds the SSL run's model took to export, score and save

    def minutes_left(share):
        """`share` of the budget that is left, less what writing the outputs
        takes (twice what the SSL run's export, scoring and saving took, when
        that was measured: the baseline's and the final writing)."""
        if not minutes:
            return None
        reserve = max(min(WRITE_MINUTES, 0.05 * minutes),
                      min(2 * after_run / 60.0, 0.25 * minutes))
        left = minutes - (time.perf_counter() - start) / 60.0 - reserve
        if left <= 0:
            raise InputError(
                f"--minutes {minutes:g} is spent before training begins (reading the "
                "images took longer); give more minutes."
            )
        return left * share

    def run_budget(name, share):
        """A run's minutes: saved with its first checkpoint, so that a resumed
        run gets the same budget (and spends what was left of it)."""
        path = os.path.join(checkpoint_dir(out_dir), f"{name}_minutes.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        value = minutes_left(share)
        with open(path, "w") as f:
            json.dump(value, f)
        return value

    if os.path.exists(os.path.join(done_dir, "result.json")):
        # Resumed after the run finished, during its baseline.
        with open(os.path.join(done_dir, "result.json")) as f:
            done = json.load(f)
        report = TwoPhaseReport(model=None, **done["report"])
        student = keras.saving.load_model(os.path.join(done_dir, "model.keras"),
                                          compile=False)
        results, labels, predictions = done["results"], done["labels"], done["predictions"]
        labels, predictions = np.asarray(labels), np.asarray(predictions)
        run_minutes = done["run_minutes"]
    else:
        run_minutes = run_budget("ssl", 1.0 / runs)
        report = fit_two_phase(
            net, data.x_train, data.y_train, unlabeled=data.unlabeled_images,
            validation_data=(data.x_val, data.y_val), algorithm=algorithm,
            unlabeled_ratio=settings["unlabeled_ratio"], epochs=settings["epochs"],
            steps_per_epoch=settings["steps_per_epoch"], batch_size=settings["batch_size"],
            monitor="val_accuracy", patience=PATIENCE, verbose=verbose, minutes=run_minutes,
            backup_dir=os.path.join(checkpoint_dir(out_dir), "ssl"),
            **_optimizer(run_minutes, settings,
                         os.path.join(checkpoint_dir(out_dir), "ssl")),
        )
        finished = time.perf_counter()
        student = report.model.export_model("student")
        labels, predictions = _predict_labels(report.model.model, data.x_val, data.y_val)
        results = {"ssl": {"val_accuracy": float(np.mean(labels == predictions)),
                           "steps": report.steps_run, "epochs": report.epochs_run,
                           "phase1_epochs": _one_based(report.switch_epoch),
                           "kept_epoch": _one_based(report.kept_epoch),
                           "seconds": round(report.wall_time_s, 1),
                           "per_class": _per_class(labels, predictions,
                                                   len(data.class_names))}}
        if baseline:  # kept, so that a resumed baseline does not train this run again
            os.makedirs(done_dir, exist_ok=True)
            student.save(os.path.join(done_dir, "model.keras"))
            fields = {f.name: getattr(report, f.name)
                      for f in dataclasses.fields(report) if f.name != "model"}
            with open(os.path.join(done_dir, "result.json"), "w") as f:
                json.dump({"report": fields, "results": results, "labels": labels.tolist(),
                           "predictions": predictions.tolist(), "run_minutes": run_minutes},
                          f, default=float)
        after_run = time.perf_counter() - finished

    if baseline:
        # The same recipe (plateau switch, best weights, exact BatchNorm
        # statistics) without unlabeled images, on the SSL run's budget: its
        # wall time with --minutes, else its number of epochs.
        _say("keras-ssl train: the supervised baseline at the same budget", verbose)
        keras.utils.set_random_seed(seed)
        net = _build_model(model, input_shape, len(data.class_names))
        same = type(algorithm).from_config(algorithm.get_config())  # its own state
        # The SSL run's budget (what is left of the whole, less the writing).
        base_minutes = run_budget("baseline", 1.0) if minutes else None
        base_epochs = settings["epochs"] if minutes else report.epochs_run
        base_dir = os.path.join(checkpoint_dir(out_dir), "baseline")
        base = fit_two_phase(
            net, data.x_train, data.y_train, unlabeled=None,
            validation_data=(data.x_val, data.y_val),
            algorithm=same, unlabeled_ratio=settings["unlabeled_ratio"], epochs=base_epochs,
            steps_per_epoch=settings["steps_per_epoch"], batch_size=settings["batch_size"],
            monitor="val_accuracy", patience=PATIENCE, verbose=verbose, minutes=base_minutes,
            backup_dir=base_dir,
            **_optimizer(base_minutes, {**settings, "epochs": base_epochs}, base_dir),
        )
        base_labels, base_predictions = _predict_labels(base.model.model, data.x_val,
                                                        data.y_val)
        results["supervised"] = {
            "val_accuracy": float(np.mean(base_labels == base_predictions)),
            "steps": base.steps_run, "epochs": base.epochs_run,
            "phase1_epochs": _one_based(base.switch_epoch),
            "kept_epoch": _one_based(base.kept_epoch), "seconds": round(base.wall_time_s, 1),
            "per_class": _per_class(base_labels, base_predictions, len(data.class_names)),
        }

    files = {name: os.path.join(out_dir, name) for name in (
        "model.keras", "class_names.json", "run.json", "report.md",
        "learning_curves.png", "per_class_accuracy.png", "confusion_matrix.png")}
    student.save(files["model.keras"])
    with open(files["class_names.json"], "w") as f:
        json.dump(data.class_names, f, indent=1)
    if settings["unlabeled_dir"]:
        report.plot(files["learning_curves.png"])
    else:  # one supervised run: no phases, no unlabeled loss
        plots.plot_history(
            {k: v for k, v in report.history.items()
             if k not in ("phase", "unsup_loss", "sup_loss", "mask_rate")},
            files["learning_curves.png"],
            title=f"supervised run: {report.epochs_run} epochs, {report.wall_time_s:.0f} s")
    plots.plot_per_class_accuracy(
        {name: r["per_class"] for name, r in results.items()}, data.class_names,
        files["per_class_accuracy.png"], "accuracy per class (validation split)")
    plots.plot_confusion_matrix(labels, predictions, data.class_names,
                                files["confusion_matrix.png"], "SSL model, validation split")
    summary = {"settings": settings, "results": results, "class_names": data.class_names,
               "files": {k.split(".")[0]: v for k, v in files.items()},
               "wall_time_s": round(time.perf_counter() - start, 1)}
    summary["ssl"] = results["ssl"]
    with open(files["run.json"], "w") as f:
        json.dump(summary, f, indent=2, default=str)
    with open(files["report.md"], "w") as f:
        f.write(_markdown(summary, report))
    shutil.rmtree(checkpoint_dir(out_dir), ignore_errors=True)  # the run is complete
    _say(f"keras-ssl train: validation accuracy {results['ssl']['val_accuracy']:.3f}"
         + (f" (supervised baseline {results['supervised']['val_accuracy']:.3f})"
            if baseline else "")
         + ("; the unlabeled images were not used (the validation accuracy did not "
            "plateau, so phase 2 never began: give more epochs or minutes)"
            if settings["unlabeled_dir"] and report.switch_epoch is None else "")
         + f"; wrote {out_dir}/ in {summary['wall_time_s']:.0f} s", verbose)
    return summary


def _markdown(summary, report):
    settings, results = summary["settings"], summary["results"]
    lines = ["# keras-ssl run", "",
             (f"Labeled `{settings['labeled_dir']}` ({settings['labeled_images']} images, "
             f"{settings['classes']} classes: {settings['train_images']} to train, "
             f"{settings['validation_images']} held out for validation), unlabeled "
             f"`{settings['unlabeled_dir']}` ({settings['unlabeled_images']} images). "
             f"Wall time {summary['wall_time_s']:.0f} s."), "",
             "| setting | value |", "|---|---|"]
    for key in ("model", "image_size", "channels", "batch_size", "unlabeled_ratio",
                "steps_per_epoch", "algorithm", "epochs", "minutes", "flip", "seed"):
        lines.append(f"| {key} | {settings[key]} |")
    lines += ["", "## Results (validation split)", "",
              "| method | accuracy | steps | wall time |", "|---|---|---|---|"]
    names = {"ssl": ("semi-supervised (two-phase)" if settings["unlabeled_dir"]
                     else "supervised (no unlabeled images)"),
             "supervised": "supervised baseline"}
    for key, result in results.items():
        lines.append(f"| {names[key]} | {result['val_accuracy']:.1%} | {result['steps']} | "
                     f"{result['seconds']:.0f} s |")
    lines += ["", ("Accuracy on the validation split, which also chose the best epoch "
                   "(plateau detection): an optimistic estimate for both rows; classify a "
                   "held-out folder with `keras-ssl predict` for an unbiased one.")]
    if "supervised" in results and report.switch_epoch is None:
        lines += ["", ("**The unlabeled images were not used**: phase 2 never began, so "
                       "both rows are supervised runs and their difference is noise. Give "
                       "more epochs or minutes.")]
    elif "supervised" in results:
        gain = results["ssl"]["val_accuracy"] - results["supervised"]["val_accuracy"]
        lines += ["", ("**The unlabeled images helped**: " if gain > 0 else
                       "**The unlabeled images did not help** on this run: ")
                  + f"{100 * gain:+.1f} points over the supervised baseline on the "
                  f"validation split ({settings['validation_images']} images, so about "
                  f"±{100 * _standard_error(results['supervised']['val_accuracy'], settings['validation_images']):.1f} "
                  "points of noise)."]
        budget = "wall time" if settings["minutes"] else "epochs"
        lines += ["", (f"The baseline ran the same recipe on the same {budget} budget (at "
                       "most), with the same model, augmentation of its labeled images, "
                       "optimizer and validation split, and no unlabeled images.")]
    kept = ("" if report.kept_epoch is None else
            f" The saved model holds the weights of epoch {report.kept_epoch + 1}"
            + ("" if report.best_epoch is None or report.best_epoch == report.kept_epoch else
               f" (within the validation noise of the best epoch, {report.best_epoch + 1}, "
               "and trained longer)") + "; the accuracies above are its own.")
    if not settings["unlabeled_dir"]:
        phases = (f"Trained supervised for {report.epochs_run} epochs (no unlabeled "
                  "images)." + kept)
    elif report.switch_epoch is None:
        phases = ("The validation accuracy did not plateau within the budget, so the "
                  "unlabeled loss never started: the model above was trained supervised "
                  "only. Allow more epochs or minutes." + kept)
    else:
        phases = (f"Supervised for {report.switch_epoch + 1} epochs, then semi-supervised "
                  f"up to epoch {report.epochs_run}." + kept)
    lines += ["", phases, "",
              "## Accuracy per class", "", "| class | " + " | ".join(
                  names[k] for k in results) + " |",
              "|---|" + "---|" * len(results)]
    for index, name in enumerate(summary["class_names"]):
        lines.append(f"| {name} | " + " | ".join(
            f"{results[k]['per_class'][index]:.1%}" for k in results) + " |")
    lines += ["", "![learning curves](learning_curves.png)", "",
              "![accuracy per class](per_class_accuracy.png)", "",
              "![confusion matrix](confusion_matrix.png)", "",
              ("`model.keras` loads with `keras.saving.load_model` (no keras-ssl needed); it "
              "takes raw 0-255 pixels and returns logits. `class_names.json` maps its "
              "outputs to class names."), ""]
    return "\n".join(lines)


def _load_for_folders(model_path, class_names):
    """A saved classifier and its class names (given, or `class_names.json` beside it)."""
    if not os.path.exists(model_path):
        raise InputError(f"The model file {model_path!r} does not exist.")
    if class_names is None:
        path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "class_names.json")
        if not os.path.exists(path):
            raise InputError(
                f"No class_names.json beside {model_path!r}: pass the class names "
                "(--classes a,b,c) or copy the file written by keras-ssl train."
            )
        with open(path) as f:
            class_names = json.load(f)
    model = keras.saving.load_model(model_path, compile=False)
    return model, list(class_names)


def _probabilities(model, batch):
    scores = keras.ops.convert_to_numpy(model.predict_on_batch(batch))
    if not (np.all(scores >= 0) and np.allclose(scores.sum(-1), 1.0, atol=1e-3)):
        scores = keras.ops.convert_to_numpy(keras.ops.softmax(scores, axis=-1))
    return scores


def _classify(model, paths, batch_size=64):
    """Class probabilities of image files, read at the model's input size."""
    height, width, channels = (int(v) for v in model.inputs[0].shape[1:])
    out = [_probabilities(model, folders.load_images(paths[b:b + batch_size],
                                                     (height, width), channels))
           for b in range(0, len(paths), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0))


def evaluate_folder(model_path, labeled_dir, class_names=None, batch_size=64):
    """Accuracy of a saved classifier on a labeled folder (one sub-folder per class).

    The unbiased score of a `keras-ssl train` run: a folder it never saw.

    Example:

    ```python
    scores = keras_ssl.runner.evaluate_folder("run1/model.keras", "photos/test")
    scores["accuracy"], scores["per_class"]
    ```

    Args:
        model_path: a `.keras` model taking raw 0-255 pixels.
        labeled_dir: one sub-folder per class, named as the model's classes.
        class_names: the model's class names in output order; None reads
            `class_names.json` beside the model.
        batch_size: images per forward pass.

    Returns:
        A dict: `accuracy`, `images`, `per_class` (name -> accuracy or None
        for a class without images), `confusion` (rows: true class, columns:
        predicted, in `class_names` order) and `class_names`.
    """
    model, class_names = _load_for_folders(model_path, class_names)
    scan = folders.scan(labeled_dir, labeled=True)
    unknown = sorted(set(scan.class_names) - set(class_names))
    if unknown:
        raise InputError(
            f"The folder {labeled_dir!r} has classes the model does not know: {unknown}; "
            f"the model's classes are {class_names}."
        )
    truth = np.asarray([class_names.index(scan.class_names[i]) for i in scan.labels])
    predicted = np.argmax(_classify(model, scan.files, batch_size), axis=-1)
    count = len(class_names)
    confusion = np.zeros((count, count), "int64")
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum()
                        else None) for i, name in enumerate(class_names)}
    return {"accuracy": float(np.mean(truth == predicted)), "images": len(truth),
            "per_class": per_class, "confusion": confusion.tolist(),
            "class_names": class_names}


def _standard_error(accuracy, count):
    return float(np.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(count, 1)))


def predict_folder(model_path, images, out_csv, class_names=None, batch_size=64, top_k=1):
    """Classify an image file, or every image file under a folder; write a CSV.

    One row per image: `path`, then for each of the `top_k` most probable
    classes its name and probability (`class`, `probability`, `class_2`,
    `probability_2`, ...).

    Example:

    ```python
    count = keras_ssl.runner.predict_folder("run1/model.keras", "photos/new",
                                            "predictions.csv", top_k=3)
    ```

    Args:
        model_path: a `.keras` model written by `train_from_folders` (or any
            model taking raw 0-255 pixels and returning class scores).
        images: an image file, or a folder of images (sub-folders are read
            too; hidden files skipped).
        out_csv: the CSV to write, or "-" for standard output.
        class_names: list of names; None reads `class_names.json` beside the
            model.
        batch_size: images per forward pass.
        top_k: how many classes per image (at most the number of classes).

    Returns:
        The number of rows written.
    """
    model, class_names = _load_for_folders(model_path, class_names)
    _check_model(model, model_path)
    width = model.outputs[0].shape[-1]
    if width != len(class_names):
        raise InputError(
            f"{model_path!r} has {width} outputs, but {len(class_names)} class names were "
            f"given; pass {width} names to --classes, in the model's output order (or keep "
            "the class_names.json that keras-ssl train wrote beside the model)."
        )
    if os.path.isfile(images):
        files = [os.fspath(images)]
    else:
        files = folders.scan(images, labeled=False).files
    scores = _classify(model, files, batch_size)
    top_k = max(1, min(int(top_k), len(class_names)))
    header = ["path"]
    for rank in range(1, top_k + 1):
        suffix = "" if rank == 1 else f"_{rank}"
        header += [f"class{suffix}", f"probability{suffix}"]
    out = sys.stdout if out_csv == "-" else open(out_csv, "w", newline="")  # noqa: SIM115
    try:
        writer = csv.writer(out)
        writer.writerow(header)
        for path, row in zip(files, scores):
            best = np.argsort(-row)[:top_k]
            cells = [path]
            for index in best:
                cells += [class_names[int(index)], f"{float(row[index]):.4f}"]
            writer.writerow(cells)
    finally:
        if out is not sys.stdout:
            out.close()
    return len(files)
