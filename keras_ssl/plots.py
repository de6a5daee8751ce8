"""Matplotlib charts of SSL runs, written to PNG with the Agg canvas.

The figures are built on `matplotlib.figure.Figure` with an Agg canvas, so
plotting never changes the user's matplotlib backend and needs no display.
"""

import os


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    figure.savefig(path, format="png")
    return os.fspath(path)


def _mark_phases(axis, phases, switch_epoch):
    if switch_epoch is None or not phases:
        return
    boundary = switch_epoch + 1.5  # epochs are drawn 1-based
    axis.axvline(boundary, color="0.3", linestyle="--", linewidth=1)
    axis.axvspan(boundary, len(phases) + 0.5, color="tab:green", alpha=0.07,
                 label="phase 2 (SSL)")


def plot_history(history, path, phases=None, switch_epoch=None, title=None):
    """Plot losses and accuracies per epoch, with the phase boundary, to a PNG.

    Example:

    ```python
    switch = keras_ssl.callbacks.PlateauPhaseSwitch(patience=2)
    history = ssl.fit(x, y, unlabeled=u, validation_data=(x_val, y_val),
                      epochs=20, callbacks=[switch])
    keras_ssl.plots.plot_history(history, "run.png",
                                 switch_epoch=switch.switch_epoch)
    ```

    Args:
        history: a `keras.callbacks.History` or its `.history` dict.
        path: where to write the PNG (folders are created).
        phases: optional list of the phase (1 or 2) of each epoch; read from
            `history["phase"]` when present.
        switch_epoch: last epoch (0-based) of phase 1, or None.
        title: optional figure title.

    Returns:
        The path written.
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs:
        raise ValueError(
            "plot_history(history=...) needs a keras History or a non-empty dict of "
            f"per-epoch lists; received {type(history).__name__}."
        )
    phases = list(phases if phases is not None else logs.get("phase", []))
    epochs = range(1, 1 + max(len(v) for v in logs.values()))
    loss_keys = [k for k in ("loss", "val_loss", "sup_loss", "unsup_loss") if k in logs]
    score_keys = [k for k in logs if k.endswith("accuracy") and k not in loss_keys]
    figure = _figure(10, 4)
    panels = [(loss_keys, "loss")] + ([(score_keys, "accuracy")] if score_keys else [])
    for index, (keys, label) in enumerate(panels):
        axis = figure.add_subplot(1, len(panels), index + 1)
        for key in keys:
            values = logs[key]
            axis.plot(list(epochs)[:len(values)], values, marker=".", label=key)
        _mark_phases(axis, phases, switch_epoch)
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def plot_two_phase(report, path):
    """Plot a `keras_ssl.TwoPhaseReport` (see `TwoPhaseReport.plot`)."""
    final = ", ".join(f"{k} {v:.3f}" for k, v in sorted(report.final_metrics.items())
                      if "accuracy" in k)
    title = (f"two-phase run: switch after epoch "
             f"{'-' if report.switch_epoch is None else report.switch_epoch + 1}, "
             f"{report.epochs_run} epochs, {report.wall_time_s:.0f} s"
             + (f"; {final}" if final else ""))
    return plot_history(report.history, path, phases=report.phases,
                        switch_epoch=report.switch_epoch, title=title)


def plot_confusion_matrix(labels, predictions, class_names, path, title=None):
    """A confusion matrix (rows: true class, columns: predicted), counts in the cells.

    Args:
        labels, predictions: integer classes, one per image.
        class_names: the names of the classes, in index order.
        path: where to write the PNG.
        title: optional title.

    Returns:
        The path written.
    """
    import numpy as np

    count = len(class_names)
    matrix = np.zeros((count, count), int)
    for true, predicted in zip(np.asarray(labels).reshape(-1), np.asarray(predictions)):
        matrix[int(true), int(predicted)] += 1
    side = max(4.0, 0.45 * count + 2)
    figure = _figure(side, side)
    axis = figure.add_subplot()
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(count), class_names, rotation=90, fontsize=8)
    axis.set_yticks(range(count), class_names, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if count <= 30:
        middle = matrix.max() / 2.0
        for i in range(count):
            for j in range(count):
                axis.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                          color="white" if matrix[i, j] > middle else "black")
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return _save(figure, path)


def plot_per_class_accuracy(accuracies, class_names, path, title=None):
    """Bars of accuracy per class; `accuracies` is `{label: [value per class]}`.

    Returns:
        The path written.
    """
    import numpy as np

    count = len(class_names)
    figure = _figure(max(5.0, 0.5 * count + 2), 3.5)
    axis = figure.add_subplot()
    width = 0.8 / max(1, len(accuracies))
    for index, (label, values) in enumerate(accuracies.items()):
        axis.bar(np.arange(count) + index * width, values, width=width, label=label)
    axis.set_xticks(np.arange(count) + width * (len(accuracies) - 1) / 2, class_names,
                    rotation=90 if count > 8 else 0, fontsize=8)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("accuracy")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return _save(figure, path)
