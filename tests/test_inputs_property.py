"""Property: whatever fit receives, it trains correctly or raises InputError
before the first step: no other exception, no hang, no NaN weights, and no
weight changed when it refuses.

Hypothesis draws shapes, dtypes, pixel ranges, NaNs, label forms, batch
sizes, step and epoch counts, validation splits and input containers.
`derandomize=True` makes CI run the same examples every time
(`EXAMPLES` of them: 50, or `KERAS_SSL_PROPERTY_EXAMPLES` for a longer search).
"""

import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import keras_ssl

EXAMPLES = int(os.environ.get("KERAS_SSL_PROPERTY_EXAMPLES", "50"))
SECONDS_PER_EXAMPLE = 60
SHAPE = (6, 6, 1)


class _Steps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.count = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.count += 1


def _mostly(*good, bad=()):
    """Each good value eight times as likely as each bad one."""
    return st.sampled_from(list(good) * 8 + list(bad))


def _images(draw, count, shape):
    dtype = draw(_mostly("uint8", "float32", bad=("float64", "int32", "uint16")))
    kind = draw(_mostly("unit", "uint8", "symmetric", bad=("standardized", "huge")))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    base = rng.uniform(0, 1, (count,) + shape)
    values = {"unit": base, "uint8": base * 255, "symmetric": base * 2 - 1,
              "standardized": (base - 0.5) / 0.29, "huge": base * 4000}[kind]
    if dtype in ("uint8", "int32", "uint16"):
        values = np.clip(np.round(values), 0, None)
        images = values.astype(dtype) if dtype != "uint8" else np.clip(values, 0, 255).astype(
            "uint8")
    else:
        images = values.astype(dtype)
        if count and draw(_mostly(False, bad=(True,))):
            images.reshape(-1)[draw(st.integers(0, images.size - 1))] = np.nan
    return images


def _labels(draw, count):
    form = draw(_mostly("int", "column", "float", "one_hot",
                        bad=("out_of_range", "fraction", "strings", "short")))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    y = rng.integers(0, 3, count)
    if form == "column":
        return y[:, None]
    if form == "float":
        return y.astype("float32")
    if form == "one_hot":
        return keras.utils.to_categorical(y, 3)
    if form == "out_of_range":
        return y + 2
    if form == "fraction":
        return y + 0.5
    if form == "strings":
        return np.array(["a", "b", "c"])[y]
    if form == "short":
        return y[: max(0, count - 1)]
    return y


@st.composite
def fit_arguments(draw):
    count = draw(st.sampled_from(list(range(1, 21)) + [0]))
    shape = draw(_mostly(SHAPE, bad=((6, 6), (5, 5, 1), (36,))))
    x = _images(draw, count, shape)
    y = _labels(draw, count)
    kwargs = {
        "batch_size": draw(_mostly(None, 1, 4, 8, 32, bad=(0, -1, 2.0))),
        "steps_per_epoch": draw(_mostly(None, 1, 2, bad=(0, -1))),
        "epochs": draw(_mostly(1, 2, 0, bad=(-1,))),
        "validation_split": draw(_mostly(0.0, 0.25, bad=(1.0,))),
    }
    unlabeled = draw(_mostly("none", "same", "array", "dataset", bad=("empty",)))
    if unlabeled == "same":
        kwargs["unlabeled"] = x
    elif unlabeled in ("array", "dataset"):
        images = _images(draw, draw(st.integers(1, 40)), draw(_mostly(SHAPE, bad=((6, 6, 3),))))
        kwargs["unlabeled"] = (images if unlabeled == "array"
                               else tf.data.Dataset.from_tensor_slices(images))
    elif unlabeled == "empty":
        kwargs["unlabeled"] = x[:0]
    container = draw(st.sampled_from(["array", "array", "list", "dict", "dataset",
                                      "generator"]))
    if container == "list":
        x = [x]
    elif container == "dict":
        x = {"image": x}
    elif container == "dataset" and len(x) == len(y) and y.dtype.kind not in "U":
        x = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
        y = None
        kwargs.pop("batch_size")
        if kwargs["validation_split"]:
            kwargs["validation_split"] = 0.0
    elif container == "generator" and len(x) == len(y) and len(x):
        images, labels, size = x, y, len(x)
        x = ((images[i % size:i % size + 4], labels[i % size:i % size + 4])
             for i in range(0, 400, 4))
        y = None
        kwargs.pop("batch_size")
        kwargs["validation_split"] = 0.0
        kwargs["steps_per_epoch"] = kwargs["steps_per_epoch"] or 2
    algorithm = draw(st.sampled_from(["fixmatch", "meanteacher"]))
    value_range = draw(_mostly(None, bad=("unit", "uint8", "symmetric")))
    return x, y, kwargs, algorithm, value_range


def _timeout(signum, frame):
    raise TimeoutError(f"fit did not return within {SECONDS_PER_EXAMPLE} s")


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(fit_arguments())
def test_fit_trains_or_refuses_before_the_first_step(arguments):
    x, y, kwargs, algorithm, value_range = arguments
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    algorithm = (keras_ssl.FixMatch(threshold=0.5) if algorithm == "fixmatch"
                 else keras_ssl.MeanTeacher(rampup_steps=2))
    ssl = keras_ssl.SemiSupervisedModel(model, algorithm, unlabeled_ratio=2,
                                        value_range=value_range)
    ssl.compile(optimizer="sgd")
    before = [np.array(w) for w in model.get_weights()]
    steps = _Steps()
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(SECONDS_PER_EXAMPLE)
    try:
        history = ssl.fit(x, y, verbose=0, callbacks=[steps], **kwargs)
    except keras_ssl.InputError as error:
        assert steps.count == 0, f"refused after {steps.count} steps: {error}"
        for old, new in zip(before, model.get_weights()):
            np.testing.assert_array_equal(old, new)
        assert ssl.value_range == (None if value_range is None
                                   else keras_ssl.augment.resolve_value_range(value_range))
        event("refused: " + str(error)[:50])
        return
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert isinstance(history, keras.callbacks.History)
    for weight in model.get_weights():
        assert np.isfinite(weight).all()
    for values in history.history.values():
        assert np.isfinite(values).all()
    if kwargs.get("epochs", 1) > 0:
        assert steps.count > 0
    event("trained")
