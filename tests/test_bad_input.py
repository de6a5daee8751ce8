"""The bad-input table: every case is answered before the first training step.

Each row of `CASES` is a row of docs/bad_inputs.md (same id). A case either
raises (`InputError` or the constructor's `ValueError`/`TypeError`) from
keras-ssl's own code, with a message that names the argument and says what to
do, or warns and trains on. `pytest -k bad_input` runs them all.
"""

import re
import traceback
from collections import namedtuple
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl
from keras_ssl import InputError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"

Case = namedtuple("Case", "id expect match run")

_STEPS = []  # training steps started, recorded by _StepSpy


class _StepSpy(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        _STEPS.append(batch)


def _images(n, side=8, channels=1, seed=0, dtype="float32"):
    images = np.random.default_rng(seed).uniform(0, 1, (n, side, side, channels))
    return images.astype(dtype)


def _labels(n, classes=3, seed=0):
    return np.random.default_rng(seed).integers(0, classes, n)


X, Y, U = _images(16), _labels(16), _images(64, seed=1)


def _classifier(classes=3, softmax=False, input_shape=(8, 8, 1)):
    layers = [keras.Input(input_shape)]
    if len(input_shape) > 1:
        layers.append(keras.layers.Flatten())
    layers.append(keras.layers.Dense(classes, activation="softmax" if softmax else None))
    return keras.Sequential(layers)


def _ssl(model=None, algorithm=None, ratio=2, compile=True, loss=None, **kwargs):
    ssl = keras_ssl.SemiSupervisedModel(
        model if model is not None else _classifier(),
        algorithm if algorithm is not None else keras_ssl.FixMatch(flip=False),
        unlabeled_ratio=ratio,
        **kwargs,
    )
    if compile:
        ssl.compile(optimizer="sgd", loss=loss)
    return ssl


def _fit(ssl=None, x=X, y=Y, **kwargs):
    ssl = ssl if ssl is not None else _ssl()
    kwargs.setdefault("unlabeled", U)
    kwargs.setdefault("batch_size", 8)
    kwargs.setdefault("steps_per_epoch", 1)
    return ssl.fit(x, y, epochs=1, verbose=0, callbacks=[_StepSpy()], **kwargs)


def _dataset(*arrays):
    return tf.data.Dataset.from_tensor_slices(arrays if len(arrays) > 1 else arrays[0])


def _zipped(unlabeled):
    labeled = _dataset(X, Y).batch(8).repeat()
    return tf.data.Dataset.zip((labeled, unlabeled.batch(16).repeat()))


class _PairsPyDataset(keras.utils.PyDataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return U[index * 16:(index + 1) * 16], np.zeros(16)


class _NaNPyDataset(keras.utils.PyDataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return np.full((16, 8, 8, 1), np.nan, "float32")


class _SoftmaxInCall(keras.Model):
    """A subclassed model applying softmax inside call(): no softmax layer."""

    def __init__(self):
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return keras.ops.softmax(self.dense(self.flatten(x)))


def _two_outputs():
    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, [keras.layers.Dense(3)(flat), keras.layers.Dense(2)(flat)])


def _nan_weights():
    model = _classifier()
    model.layers[-1].kernel.assign(np.full((64, 3), np.nan, "float32"))
    return model


def _with_label(y, index, value):
    y = y.copy()
    y[index] = value
    return y


def _sparse_logits_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


CASES = [
    # --- unlabeled images
    Case("unlabeled_shape_mismatch", InputError,
         r"unlabeled images have shape \(10, 10, 1\) but labeled images have shape "
         r"\(8, 8, 1\)\. Resize or crop",
         lambda: _fit(unlabeled=_images(64, side=10))),
    Case("unlabeled_dataset_shape_mismatch", InputError,
         r"unlabeled images have shape \(10, 10, 1\) but labeled .* \(8, 8, 1\)",
         lambda: _fit(unlabeled=_dataset(_images(64, side=10)))),
    Case("unlabeled_yields_pairs", InputError,
         r"unlabeled must yield images only.*\(x, y\) pairs.*"
         r"dataset\.map\(lambda x, y: x\)",
         lambda: _fit(unlabeled=_dataset(U, _labels(64)))),
    Case("unlabeled_pydataset_yields_pairs", InputError,
         r"unlabeled must yield images only.*tuples of 2 elements",
         lambda: _fit(unlabeled=_PairsPyDataset())),
    Case("zipped_unlabeled_with_labels", InputError,
         r"fit\(x=\.\.\.\) is a zipped \(labeled, unlabeled\) dataset whose unlabeled "
         r"part yields tuples",
         lambda: _fit(x=_zipped(_dataset(U, _labels(64))), y=None, unlabeled=None,
                      batch_size=None)),
    Case("unlabeled_empty_array", InputError,
         r"unlabeled is empty\. Pass at least one unlabeled image, or unlabeled=None",
         lambda: _fit(unlabeled=U[:0])),
    Case("unlabeled_empty_dataset", InputError,
         r"unlabeled is empty\. Pass at least one",
         lambda: _fit(unlabeled=_dataset(U).filter(lambda image: False))),
    Case("unlabeled_not_images", InputError,
         r"unlabeled must be a numpy array of images, a tf\.data\.Dataset .* received str",
         lambda: _fit(unlabeled="images/")),
    Case("unlabeled_smaller_than_batch", UserWarning,
         r"unlabeled has 5 images but each step takes 16 \(unlabeled_ratio \* "
         r"batch_size\)",
         lambda: _fit(unlabeled=U[:5])),
    Case("unlabeled_dataset_smaller_than_batch", UserWarning,
         r"unlabeled has 5 images but each step takes 16",
         lambda: _fit(unlabeled=_dataset(U[:5]))),
    Case("unlabeled_labels_length_mismatch", InputError,
         r"fit\(unlabeled_labels=\.\.\.\) has 10 labels but unlabeled has 64 images",
         lambda: _fit(unlabeled_labels=np.zeros(10, "int32"))),
    Case("unlabeled_labels_without_unlabeled", InputError,
         r"fit\(unlabeled_labels=\.\.\.\) was given without unlabeled=",
         lambda: _fit(unlabeled=None, unlabeled_labels=np.zeros(64, "int32"))),
    Case("zipped_and_unlabeled", ValueError,
         r"zipped \(labeled, unlabeled\) dataset as `x` and also `unlabeled=`",
         lambda: _fit(x=_zipped(_dataset(U)), y=None, batch_size=None)),
    # --- labels
    Case("labels_out_of_range", InputError,
         r"labels \(y\) must be integers in \[0, 2\] for a model with 3 outputs; "
         r"received labels in \[0, 3\]",
         # The bad label is the last one: the whole y array is checked.
         lambda: _fit(y=_with_label(Y, -1, 3))),
    Case("labels_negative", InputError,
         r"labels \(y\) must be integers in \[0, 2\].*received labels in \[-1, ",
         lambda: _fit(y=_with_label(Y, 3, -1))),
    Case("labels_not_integer", InputError,
         r"labels \(y\) must be integer class indices; received non-integer values "
         r"such as \d\.5",
         lambda: _fit(y=Y + 0.5)),
    Case("labels_nan", InputError,
         r"y contains NaN or Inf labels\. Remove those examples",
         lambda: _fit(y=_with_label(Y.astype("float32"), 0, np.nan))),
    Case("labels_missing", InputError,
         r"fit\(\) received labeled images x but y=None",
         lambda: _fit(y=None)),
    Case("labels_length_mismatch", InputError,
         r"x and y must have the same number of examples; received 16 images and "
         r"10 labels",
         lambda: _fit(y=Y[:10])),
    Case("labeled_dataset_without_labels", InputError,
         r"fit\(x=\.\.\.\) is a dataset of images only .* needs labels for x",
         lambda: _fit(x=_dataset(X).batch(8), y=None, batch_size=None)),
    Case("labeled_set_empty", InputError,
         r"fit\(x=\.\.\.\) holds no labeled images",
         lambda: _fit(x=X[:0], y=Y[:0])),
    Case("one_hot_labels_sparse_loss", InputError,
         r"labels are one-hot or multi-column \(shape \(16, 3\)\) but the loss is "
         r"sparse categorical cross-entropy.*y\.argmax\(-1\)",
         lambda: _fit(_ssl(loss=_sparse_logits_loss()), y=keras.utils.to_categorical(Y, 3))),
    Case("integer_labels_categorical_loss", InputError,
         r"labels are integers \(shape \(16,\)\) but the loss is categorical "
         r"cross-entropy, which expects one-hot labels",
         lambda: _fit(_ssl(loss=keras.losses.CategoricalCrossentropy(from_logits=True)))),
    Case("one_hot_width_mismatch", InputError,
         r"one-hot labels have 4 columns but the wrapped model has 3 outputs",
         lambda: _fit(_ssl(loss=keras.losses.CategoricalCrossentropy(from_logits=True)),
                      y=keras.utils.to_categorical(Y, 4))),
    # --- model and loss
    Case("softmax_model_from_logits_loss", InputError,
         r"ends with a softmax \(it outputs probabilities\) but compile\(loss=\.\.\.\) "
         r"has from_logits=True",
         lambda: _fit(_ssl(_classifier(softmax=True), loss=_sparse_logits_loss()))),
    Case("logits_model_probability_loss", InputError,
         r"outputs logits \(no final softmax\) but "
         r"compile\(loss='sparse_categorical_crossentropy'\) expects probabilities",
         lambda: _fit(_ssl(loss="sparse_categorical_crossentropy"))),
    Case("probabilities_without_softmax_layer", InputError,
         r"outputs look like probabilities .* outputs='probabilities'",
         lambda: _fit(_ssl(_SoftmaxInCall(), loss=_sparse_logits_loss()))),
    Case("regression_loss", InputError,
         r"compile\(loss='mse'\) fails on the first labeled batch \(labels of shape "
         r"\(2,\), model outputs of shape \(2, 3\)\)",
         lambda: _fit(_ssl(loss="mse"))),
    Case("several_outputs", InputError,
         r"SemiSupervisedModel\(model=\.\.\.\) must have a single output .* has 2 "
         r"outputs",
         lambda: _ssl(_two_outputs())),
    Case("output_not_class_scores", InputError,
         r"must output class scores of shape \(batch, classes\) with classes >= 2; "
         r"it outputs shape \(2, 1\)",
         lambda: _fit(_ssl(_classifier(classes=1)))),
    Case("output_is_an_image", InputError,
         r"must output class scores .* it outputs shape \(2, 8, 8, 3\)",
         lambda: _fit(_ssl(keras.Sequential([keras.Input((8, 8, 1)),
                                             keras.layers.Conv2D(3, 1)])))),
    Case("model_outputs_nan", InputError,
         r"wrapped model outputs NaN or Inf on the first labeled batch, before any "
         r"training",
         lambda: _fit(_ssl(_nan_weights()))),
    Case("not_a_keras_model_layer", InputError,
         r"SemiSupervisedModel\(model=\.\.\.\) must be a keras\.Model .* received "
         r"Dense\. Wrap the layer",
         lambda: _ssl(keras.layers.Dense(3))),
    Case("not_a_keras_model_function", InputError,
         r"must be a keras\.Model .* received function",
         lambda: _ssl(lambda images: images)),
    Case("uncompiled_model", InputError,
         r"SemiSupervisedModel is not compiled\. Call ssl_model\.compile",
         lambda: _fit(_ssl(compile=False))),
    Case("algorithm_not_an_instance", TypeError,
         r"SemiSupervisedModel\(algorithm=\.\.\.\) must be a keras_ssl\.Algorithm",
         lambda: _ssl(algorithm=keras_ssl.FixMatch)),
    # --- images and their values
    Case("uint8_images_declared_symmetric", InputError,
         r"x \(labeled images\) has values in \[\d+, 25\d\] but value_range is "
         r"\(-1\.0, 1\.0\)\. Scale the images",
         lambda: _fit(_ssl(value_range=(-1, 1)), x=(X * 255).astype("uint8"),
                      unlabeled=(U * 255).astype("uint8"))),
    Case("unlabeled_value_range", InputError,
         r"unlabeled has values in \[\d+, 25\d\] but value_range is \(0\.0, 1\.0\)",
         lambda: _fit(unlabeled=(U * 255).astype("uint8"))),
    Case("unlabeled_dataset_value_range", InputError,
         r"unlabeled \(first batch\) has values in .* but value_range is \(0\.0, 1\.0\)",
         lambda: _fit(unlabeled=_dataset(U * 255))),
    Case("unknown_value_range", ValueError,
         r"Unknown value_range='0-255'",
         lambda: _ssl(value_range="0-255")),
    Case("nan_in_labeled_images", InputError,
         r"x \(labeled images\) contains 1 NaN or Inf values\. Clean or drop",
         lambda: _fit(x=np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X))),
    Case("inf_in_unlabeled_images", InputError,
         r"unlabeled contains 1 NaN or Inf values",
         lambda: _fit(unlabeled=np.where(np.arange(U.size).reshape(U.shape) == 7,
                                         np.inf, U))),
    Case("nan_in_unlabeled_dataset", InputError,
         r"unlabeled \(first batch\) contains \d+ NaN or Inf values",
         lambda: _fit(unlabeled=_dataset(np.full_like(U, np.nan)))),
    Case("nan_in_unlabeled_pydataset", InputError,
         r"unlabeled \(first batch\) contains \d+ NaN or Inf values",
         lambda: _fit(unlabeled=_NaNPyDataset())),
    Case("nan_in_zipped_unlabeled", InputError,
         r"unlabeled \(first batch\) contains \d+ NaN or Inf values",
         lambda: _fit(x=_zipped(_dataset(np.full_like(U, np.nan))), y=None,
                      unlabeled=None, batch_size=None)),
    Case("flat_inputs", InputError,
         r"x \(labeled images\) must be a batch of images of rank 4 .* received shape "
         r"\(16, 64\).*x\.reshape",
         lambda: _fit(_ssl(_classifier(input_shape=(64,))), x=X.reshape(16, 64),
                      unlabeled=U.reshape(64, 64))),
    Case("images_without_channel_axis", InputError,
         r"must be a batch of images of rank 4 .* received shape \(16, 8, 8\).*"
         r"x\[\.\.\., None\]",
         lambda: _fit(x=X[..., 0])),
    Case("unlabeled_dataset_wrong_rank", InputError,
         r"unlabeled must yield images of rank 3 \(or batches of rank 4\)",
         lambda: _fit(unlabeled=_dataset(U.reshape(64, 64)))),
    # --- hyper-parameters
    Case("threshold_above_one", ValueError,
         r"FixMatch\(threshold=\.\.\.\) must be in \(0, 1\); received 1\.5",
         lambda: keras_ssl.FixMatch(threshold=1.5)),
    Case("threshold_zero", ValueError,
         r"FixMatch\(threshold=\.\.\.\) must be in \(0, 1\); received 0",
         lambda: keras_ssl.FixMatch(threshold=0)),
    Case("unlabeled_ratio_below_one", InputError,
         r"SemiSupervisedModel\(unlabeled_ratio=\.\.\.\) must be an integer >= 1 .*"
         r"received 0",
         lambda: _ssl(ratio=0)),
    Case("unlabeled_ratio_not_integer", InputError,
         r"SemiSupervisedModel\(unlabeled_ratio=\.\.\.\) must be an integer >= 1 .*"
         r"received 2\.5",
         lambda: _ssl(ratio=2.5)),
    Case("batch_size_zero", InputError,
         r"fit\(batch_size=\.\.\.\) must be an integer >= 1 .* received 0",
         lambda: _fit(batch_size=0)),
    Case("batch_size_larger_than_labeled_set", UserWarning,
         r"batch_size=64 is larger than the labeled set \(16 images\).*"
         r"Pass batch_size <= 16",
         lambda: _fit(batch_size=64)),
]

ERRORS = [case for case in CASES if issubclass(case.expect, Exception)
          and not issubclass(case.expect, Warning)]
WARNINGS = [case for case in CASES if issubclass(case.expect, Warning)]


@pytest.fixture(autouse=True)
def _reset_steps():
    _STEPS.clear()
    yield


@pytest.mark.parametrize("case", ERRORS, ids=[case.id for case in ERRORS])
def test_bad_input_raises_before_first_step(case):
    with pytest.raises(case.expect, match=case.match) as info:
        case.run()
    assert not _STEPS, f"{case.id}: {len(_STEPS)} training step(s) began"
    # Raised by keras-ssl's own checks, not deep inside a framework.
    origin = traceback.extract_tb(info.tb)[-1].filename
    assert "keras_ssl" in origin, f"{case.id}: raised from {origin}"
    # The message says what to do or what was expected, not only what is wrong.
    assert len(str(info.value)) > 40


@pytest.mark.parametrize("case", WARNINGS, ids=[case.id for case in WARNINGS])
def test_bad_input_warns_and_trains(case):
    with pytest.warns(case.expect, match=case.match):
        history = case.run()
    losses = history.history["loss"]
    assert losses and np.all(np.isfinite(losses))


def test_bad_input_table_in_docs_matches_tests():
    text = DOCS.read_text()
    documented = re.findall(r"^\|\s*`([a-z0-9_]+)`\s*\|", text, flags=re.MULTILINE)
    assert len(documented) == len(set(documented)), "duplicate ids in the docs"
    tested = [case.id for case in CASES]
    assert len(tested) == len(set(tested)), "duplicate ids in CASES"
    assert set(documented) == set(tested), (
        f"only in docs: {sorted(set(documented) - set(tested))}; "
        f"only in tests: {sorted(set(tested) - set(documented))}"
    )
    assert len(tested) >= 15


def test_bad_input_integral_float_ratio_is_accepted():
    ssl = _ssl(ratio=2.0)
    assert ssl.unlabeled_ratio == 2
