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


_STATE = {}  # the model of the last _fit and what it held before fit


def _snapshot(ssl):
    weights = [np.array(w) for w in ssl.model.get_weights()] if ssl.model.built else []
    return {"weights": weights, "value_range": ssl.value_range,
            "variables": len(ssl.variables)}


def _fit(ssl=None, x=X, y=Y, **kwargs):
    ssl = ssl if ssl is not None else _ssl()
    kwargs.setdefault("unlabeled", U)
    kwargs.setdefault("batch_size", 8)
    kwargs.setdefault("steps_per_epoch", 1)
    kwargs.setdefault("epochs", 1)
    _STATE.clear()
    _STATE.update(model=ssl, before=_snapshot(ssl))
    return ssl.fit(x, y, verbose=0, callbacks=[_StepSpy()], **kwargs)


def _fit_twice(first, second):
    """Train once with `first` (fit kwargs), then fit again with `second`."""
    ssl = _ssl()
    _fit(ssl, **first)
    _STEPS.clear()
    return _fit(ssl, **second)


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


def _two_inputs():
    image, side = keras.Input((8, 8, 1)), keras.Input((2,))
    merged = keras.layers.Concatenate()([keras.layers.Flatten()(image), side])
    return keras.Model([image, side], keras.layers.Dense(3)(merged))


def _dict_output():
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, {"scores": keras.layers.Dense(3)(keras.layers.Flatten()(inputs))})


def _generator(items):
    yield from items


class _EmptyPyDataset(keras.utils.PyDataset):
    def __len__(self):
        return 0

    def __getitem__(self, index):
        raise IndexError(index)


def _nan_after_first_batch(images, first=16):
    images = images.copy()
    images[first:] = np.nan
    return images


def _standardized(images):
    return (images - 0.5) / 0.25


def _one_hot(y, classes=3):
    return keras.utils.to_categorical(y, classes)


def _with_pixel(images, value):
    images = images.copy()
    images.reshape(-1)[3] = value
    return images


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
    Case("unlabeled_with_labels_pair", InputError,
         r"fit\(unlabeled=\.\.\.\) received a pair of arrays .*unlabeled data has no labels.*"
         r"unlabeled_labels=y_unlabeled",
         lambda: _fit(unlabeled=(U, _labels(len(U))))),
    Case("self_training_endless_stream", InputError,
         r"The unlabeled tf.data.Dataset is infinite \(it repeats\).*Pass the dataset "
         r"before .repeat\(\), or choose an algorithm without a table",
         lambda: _fit(_ssl(algorithm=keras_ssl.SelfTraining(flip=False)),
                      unlabeled=_dataset(U).repeat().map(lambda images: images))),
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
         r"labels \(y\) are one-hot or multi-column \(shape \(16, 3\)\) but the loss is "
         r"sparse categorical cross-entropy.*y\.argmax\(-1\)",
         lambda: _fit(_ssl(loss=_sparse_logits_loss()), y=keras.utils.to_categorical(Y, 3))),
    Case("integer_labels_categorical_loss", InputError,
         r"labels \(y\) are integers \(shape \(16,\)\) but the loss is categorical "
         r"cross-entropy, which expects one-hot labels",
         lambda: _fit(_ssl(loss=keras.losses.CategoricalCrossentropy(from_logits=True)))),
    Case("one_hot_width_mismatch", InputError,
         r"one-hot labels \(y\) have 4 columns but the wrapped model has 3 outputs",
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
         r"compile\(loss='mse'\) is a regression loss; keras-ssl trains classifiers",
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
    # --- fit's counts and fractions
    Case("steps_per_epoch_zero", InputError,
         r"fit\(steps_per_epoch=\.\.\.\) must be an integer >= 1 or None; received 0\. "
         r"With few labeled images, len\(x\) // batch_size is 0",
         lambda: _fit(steps_per_epoch=len(X) // 32)),
    Case("steps_per_epoch_negative", InputError,
         r"fit\(steps_per_epoch=\.\.\.\) must be an integer >= 1 or None; received -3",
         lambda: _fit(steps_per_epoch=-3)),
    Case("steps_per_epoch_float", InputError,
         r"fit\(steps_per_epoch=\.\.\.\) must be an integer >= 1 or None; received 2\.5",
         lambda: _fit(steps_per_epoch=2.5)),
    Case("epochs_negative", InputError,
         r"fit\(epochs=\.\.\.\) must be an integer >= 0; received -1",
         lambda: _fit(epochs=-1)),
    Case("initial_epoch_negative", InputError,
         r"fit\(initial_epoch=\.\.\.\) must be an integer >= 0; received -2",
         lambda: _fit(initial_epoch=-2)),
    Case("batch_size_float", InputError,
         r"fit\(batch_size=\.\.\.\) must be an integer >= 1 .* received 8\.0",
         lambda: _fit(batch_size=8.0)),
    Case("validation_freq_zero", InputError,
         r"fit\(validation_freq=\.\.\.\) must be an integer >= 1; received 0",
         lambda: _fit(validation_freq=0)),
    Case("validation_steps_zero", InputError,
         r"fit\(validation_steps=\.\.\.\) must be an integer >= 1 or None; received 0",
         lambda: _fit(validation_steps=0)),
    Case("validation_split_one", InputError,
         r"fit\(validation_split=\.\.\.\) must be a fraction in \[0, 1\); received 1\.0",
         lambda: _fit(validation_split=1.0)),
    Case("validation_split_on_dataset", InputError,
         r"fit\(validation_split=\.\.\.\) needs array inputs; x is a dataset\. Pass "
         r"validation_data= instead",
         lambda: _fit(x=_dataset(X, Y).batch(8), y=None, validation_split=0.2)),
    Case("validation_split_leaves_nothing", InputError,
         r"fit\(validation_split=0\.4\) of 1 labeled images leaves 0 for training and 1 "
         r"for validation; both need at least one",
         lambda: _fit(x=X[:1], y=Y[:1], validation_split=0.4)),
    # --- the pixel range
    Case("standardized_images", InputError,
         r"Cannot tell the pixel range of x \(labeled images\): its values are in "
         r"\[-1\.9\d*, 1\.9\d*\].*put the normalization inside the model",
         lambda: _fit(x=_standardized(X), unlabeled=_standardized(U))),
    Case("torch_mode_preprocessed", InputError,
         r"Cannot tell the pixel range of x \(labeled images\): its values are in "
         r"\[-2\.\d+, 2\.\d+\]",
         lambda: _fit(x=X * 4.7 - 2.1, unlabeled=U * 4.7 - 2.1)),
    Case("caffe_mode_preprocessed", InputError,
         r"Cannot tell the pixel range .* values are in \[-12\d(\.\d+)?, 1[2-5]\d",
         lambda: _fit(x=X * 254 - 123.7, unlabeled=U * 254 - 123.7)),
    Case("uint16_images", InputError,
         r"Cannot tell the pixel range of x \(labeled images\).*\[\d+, 4\d\d\d\]",
         lambda: _fit(x=(X * 4095).astype("uint16"), unlabeled=(U * 4095).astype("uint16"))),
    Case("unit_images_declared_uint8", InputError,
         r"x \(labeled images\) has values in \[0\.\d+, 0\.9\d+\], which look like "
         r"\[0, 1\] images, but value_range is \(0, 255\)",
         lambda: _fit(_ssl(value_range="uint8"))),
    Case("unit_images_declared_symmetric", InputError,
         r"which look like \[0, 1\] images, but value_range is \(-1, 1\)\. Scale them",
         lambda: _fit(_ssl(value_range="symmetric"))),
    Case("unlabeled_unit_labeled_uint8", InputError,
         r"unlabeled has values in .* which look like \[0, 1\] images, but value_range "
         r"is \(0, 255\)",
         lambda: _fit(x=(X * 255).astype("uint8"))),
    Case("unlabeled_standardized_labeled_unit", InputError,
         r"unlabeled has values in \[-1\.9\d*, 1\.9\d*\] but value_range is \(0\.0, 1\.0\)",
         lambda: _fit(unlabeled=_standardized(U))),
    Case("range_changed_between_fits", InputError,
         r"x \(labeled images\) has values in .* which look like \[0, 1\] images, but "
         r"value_range is \(0, 255\)",
         lambda: _fit_twice({"x": (X * 255).astype("uint8"),
                             "unlabeled": (U * 255).astype("uint8")}, {})),
    Case("standardized_unlabeled_without_range", InputError,
         r"unlabeled has values in \[-1, 1\], which look like the range \(-1\.0, 1\.0\), "
         r"but the labeled images x have values in \[-1\.9\d*, 1\.9\d*\]",
         lambda: _fit(x=_standardized(X), unlabeled=np.clip(_standardized(U), -1, 1))),
    # --- validation data
    Case("validation_range_mismatch", InputError,
         r"validation_data has values in \[\d+, 25\d\] but value_range is \(0\.0, 1\.0\)",
         lambda: _fit(validation_data=((X * 255).astype("uint8"), Y))),
    Case("validation_shape_mismatch", InputError,
         r"validation_data images have shape \(10, 10, 1\) but labeled images have shape "
         r"\(8, 8, 1\)",
         lambda: _fit(validation_data=(_images(16, side=10), Y))),
    Case("validation_labels_out_of_range", InputError,
         r"labels \(validation_data labels\) must be integers in \[0, 2\] .* "
         r"received labels in \[0, 7\]",
         lambda: _fit(validation_data=(X, _with_label(Y, 5, 7)))),
    Case("validation_nan_images", InputError,
         r"validation_data contains 1 NaN or Inf values",
         lambda: _fit(validation_data=(_with_pixel(X, np.nan), Y))),
    Case("validation_labels_length_mismatch", InputError,
         r"x and validation_data labels must have the same number of examples; received "
         r"16 images and 4 labels",
         lambda: _fit(validation_data=(X, Y[:4]))),
    Case("validation_dataset_without_labels", InputError,
         r"fit\(validation_data=\.\.\.\) is a dataset of images only .* needs labels "
         r"for validation",
         lambda: _fit(validation_data=_dataset(X).batch(8))),
    Case("validation_dataset_range_mismatch", InputError,
         r"validation_data \(first batch\) has values in \[[\d.]+, 25[\d.]+\] but "
         r"value_range is \(0\.0, 1\.0\)",
         lambda: _fit(validation_data=_dataset(X * 255, Y).batch(8))),
    Case("validation_wrong_type", InputError,
         r"fit\(validation_data=\.\.\.\) must be \(x_val, y_val\), a tf\.data\.Dataset "
         r"or a keras\.utils\.PyDataset; received str",
         lambda: _fit(validation_data="val/")),
    Case("validation_tuple_of_one", InputError,
         r"fit\(validation_data=\.\.\.\) must be \(x_val, y_val\), .* received a tuple "
         r"of 1 items",
         lambda: _fit(validation_data=(X,))),
    # --- labels, weights
    Case("string_labels", InputError,
         r"labels \(y\) are strings or objects \(e\.g\. np\.str_\('cat'\)|"
         r"labels \(y\) are strings or objects \(e\.g\. 'cat'\).*np\.unique",
         lambda: _fit(y=np.array(["cat", "dog", "bird", "cat"] * 4))),
    Case("labels_rank_3", InputError,
         r"labels \(y\) must have shape \(batch,\) .* received shape \(16, 3, 1\)",
         lambda: _fit(y=_one_hot(Y)[..., None])),
    Case("soft_labels_not_summing_to_one", InputError,
         r"one-hot or soft labels \(y\) must be non-negative rows that sum to 1",
         lambda: _fit(y=_one_hot(Y) * 2)),
    Case("sample_weight_length_mismatch", InputError,
         r"fit\(sample_weight=\.\.\.\) must hold one weight per labeled image "
         r"\(shape \(16,\)\); received shape \(5,\)",
         lambda: _fit(sample_weight=np.ones(5))),
    Case("sample_weight_negative", InputError,
         r"fit\(sample_weight=\.\.\.\) must be finite and >= 0",
         lambda: _fit(sample_weight=np.linspace(-1, 1, 16))),
    Case("sample_weight_nan", InputError,
         r"fit\(sample_weight=\.\.\.\) must be finite and >= 0",
         lambda: _fit(sample_weight=np.where(np.arange(16) == 3, np.nan, 1.0))),
    Case("sample_weight_all_zero", InputError,
         r"fit\(sample_weight=\.\.\.\) is 0 for every labeled image",
         lambda: _fit(sample_weight=np.zeros(16))),
    Case("class_weight_not_dict", InputError,
         r"fit\(class_weight=\.\.\.\) must be a non-empty dict \{class_index: weight\}; "
         r"received list",
         lambda: _fit(class_weight=[1.0, 2.0, 1.0])),
    Case("class_weight_key_out_of_range", InputError,
         r"fit\(class_weight=\.\.\.\) keys must be integer class indices in \[0, 2\]; "
         r"received key 5",
         lambda: _fit(class_weight={0: 1.0, 5: 2.0})),
    Case("class_weight_string_key", InputError,
         r"fit\(class_weight=\.\.\.\) keys must be integer class indices >= 0; "
         r"received key 'cat'",
         lambda: _fit(class_weight={"cat": 1.0})),
    Case("class_weight_negative", InputError,
         r"fit\(class_weight=\.\.\.\) values must be finite numbers >= 0; received -1",
         lambda: _fit(class_weight={0: 1.0, 1: -1.0})),
    Case("sample_weight_with_dataset", InputError,
         r"fit\(sample_weight=\.\.\.\) was given with x as a dataset: yield "
         r"\(images, labels, sample_weights\)",
         lambda: _fit(x=_dataset(X, Y).batch(8), y=None, sample_weight=np.ones(16))),
    Case("labels_with_dataset", InputError,
         r"fit\(y=\.\.\.\) was given with x as a dataset: the dataset must yield "
         r"\(images, labels\) batches itself",
         lambda: _fit(x=_dataset(X, Y).batch(8))),
    Case("unlabeled_labels_not_integer", InputError,
         r"fit\(unlabeled_labels=\.\.\.\) must be integer classes; received dtype float",
         lambda: _fit(unlabeled_labels=np.full(64, 0.5))),
    Case("unlabeled_labels_one_hot", InputError,
         r"fit\(unlabeled_labels=\.\.\.\) must be integer classes of shape \(n,\); "
         r"received shape \(64, 3\)",
         lambda: _fit(unlabeled_labels=_one_hot(_labels(64)))),
    # --- containers: several inputs or outputs, generators, PyDatasets, paths
    Case("multi_input_list", InputError,
         r"fit\(\) received x as a list of 2 arrays, which Keras reads as several model "
         r"inputs",
         lambda: _fit(x=[X, X])),
    Case("list_of_single_images", InputError,
         r"fit\(\) received x as a list of 16 arrays.*stack them: np\.stack\(x\)",
         lambda: _fit(x=list(X))),
    Case("dict_inputs_two_keys", InputError,
         r"fit\(\) received x as a dict of 2 entries \(\['image', 'meta'\]\); keras-ssl "
         r"trains models with one image input",
         lambda: _fit(x={"image": X, "meta": np.zeros((16, 2))})),
    Case("dict_labels_two_keys", InputError,
         r"fit\(\) received y as a dict of 2 entries",
         lambda: _fit(y={"a": Y, "b": Y})),
    Case("multi_input_model", InputError,
         r"SemiSupervisedModel\(model=\.\.\.\) must take a single image input; .* has 2 "
         r"inputs",
         lambda: _ssl(_two_inputs())),
    Case("dict_output_model", InputError,
         r"The wrapped model returns a dict \(\['scores'\]\), not one tensor of class "
         r"scores",
         lambda: _fit(_ssl(_dict_output()))),
    Case("labeled_dataset_unbatched", InputError,
         r"fit\(x=\.\.\.\) is a dataset of single \(image, label\) pairs, not batches.*"
         r"dataset\.batch\(32\)",
         lambda: _fit(x=_dataset(X, Y), y=None)),
    Case("labeled_dataset_yields_dicts", InputError,
         r"fit\(x=\.\.\.\) yields dicts \(\['image', 'label'\]\)",
         lambda: _fit(x=tf.data.Dataset.from_tensor_slices({"image": X, "label": Y}).batch(8),
                      y=None)),
    Case("labeled_dataset_empty_after_filter", InputError,
         r"fit\(x=\.\.\.\) is a dataset that yields nothing",
         lambda: _fit(x=_dataset(X, Y).filter(lambda a, b: False).batch(8), y=None)),
    Case("labeled_generator_empty", InputError,
         r"fit\(x=\.\.\.\) is a generator that yields nothing",
         lambda: _fit(x=_generator([]), y=None)),
    Case("labeled_generator_images_only", InputError,
         r"fit\(x=\.\.\.\) is a generator whose items are ndarrays; keras-ssl needs "
         r"\(images, labels\) tuples",
         lambda: _fit(x=_generator([X[:8]]), y=None)),
    Case("labeled_pydataset_empty", InputError,
         r"fit\(x=\.\.\.\) is an empty PyDataset",
         lambda: _fit(x=_EmptyPyDataset(), y=None)),
    Case("labeled_generator_class_weight", InputError,
         r"fit\(class_weight=\.\.\.\) is not supported with a Python generator",
         lambda: _fit(x=_generator([(X[:8], Y[:8])]), y=None, class_weight={0: 1.0})),
    Case("zipped_with_class_weight", InputError,
         r"fit\(class_weight=\.\.\.\) is not supported with a zipped",
         lambda: _fit(x=_zipped(_dataset(U)), y=None, unlabeled=None, batch_size=None,
                      class_weight={0: 1.0})),
    Case("x_is_a_folder_path", InputError,
         r"fit\(x=\.\.\.\) must be a numpy array of labeled images.*received str\. For a "
         r"folder of images use keras\.utils\.image_dataset_from_directory",
         lambda: _fit(x="photos/", y=None)),
    Case("x_is_none", InputError,
         r"fit\(\) needs labeled images",
         lambda: _fit(x=None, y=None)),
    Case("object_images", InputError,
         r"x \(labeled images\) must be numeric images; received dtype object",
         lambda: _fit(x=np.array([None] * 16, dtype=object).reshape(16, 1, 1, 1))),
    Case("unlabeled_generator_empty", InputError,
         r"fit\(unlabeled=\.\.\.\) is a generator that yields nothing",
         lambda: _fit(unlabeled=_generator([]))),
    Case("unlabeled_pydataset_empty", InputError,
         r"unlabeled is empty",
         lambda: _fit(unlabeled=_EmptyPyDataset())),
    # --- loss and outputs
    Case("regression_loss_one_hot", InputError,
         r"compile\(loss='mean_squared_error'\) is a regression loss",
         lambda: _fit(_ssl(loss="mean_squared_error"), y=_one_hot(Y))),
    Case("huber_loss", InputError,
         r"compile\(loss=Huber\) is a regression loss",
         lambda: _fit(_ssl(loss=keras.losses.Huber()))),
    Case("outputs_probabilities_on_logits_model", InputError,
         r"SemiSupervisedModel\(outputs='probabilities'\) but the wrapped model's outputs "
         r"are not probabilities",
         lambda: _fit(_ssl(outputs="probabilities"))),
    Case("outputs_logits_on_softmax_model", InputError,
         r"SemiSupervisedModel\(outputs='logits'\) but the wrapped model ends with a "
         r"softmax layer",
         lambda: _fit(_ssl(_classifier(softmax=True), outputs="logits"))),
    Case("categorical_string_loss_logits_model", InputError,
         r"outputs logits \(no final softmax\) but compile\(loss='categorical_crossentropy'\)"
         r" expects probabilities \(from_logits=False\)\. Compile with "
         r"keras\.losses\.CategoricalCrossentropy\(from_logits=True\)",
         lambda: _fit(_ssl(loss="categorical_crossentropy"), y=_one_hot(Y))),
    # --- streams: bad values after the first batch are skipped, with a warning
    Case("nan_in_unlabeled_stream_after_first_batch", UserWarning,
         r"keras-ssl skipped 0 labeled examples and \d+ unlabeled images during epoch 1: "
         r"NaN or Inf values",
         lambda: _fit(unlabeled=_dataset(_nan_after_first_batch(U)).batch(16),
                      steps_per_epoch=4)),
    Case("nan_in_labeled_stream_after_first_batch", UserWarning,
         r"keras-ssl skipped [1-9]\d* labeled examples and 0 unlabeled images during epoch 1",
         lambda: _fit(x=_dataset(_nan_after_first_batch(X, 8), Y).batch(8), y=None,
                      steps_per_epoch=None)),
    Case("label_out_of_range_in_stream_after_first_batch", UserWarning,
         r"keras-ssl skipped [1-9]\d* labeled examples and 0 unlabeled images during epoch 1: .*"
         r"labels outside the model's classes",
         lambda: _fit(x=_dataset(X, _with_label(Y, 12, 9)).batch(8), y=None,
                      steps_per_epoch=None)),
    Case("validation_split_and_validation_data", UserWarning,
         r"fit\(\) received both validation_split and validation_data; as in Keras, "
         r"validation_data is used",
         lambda: _fit(validation_split=0.25, validation_data=(X, Y))),
]

ERRORS = [case for case in CASES if issubclass(case.expect, Exception)
          and not issubclass(case.expect, Warning)]
WARNINGS = [case for case in CASES if issubclass(case.expect, Warning)]


@pytest.fixture(autouse=True)
def _reset_steps():
    _STEPS.clear()
    _STATE.clear()
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
    # Nothing changed: the wrapped model's weights, keras-ssl's range and state.
    if _STATE:  # the case reached fit() (else it failed in a constructor)
        after = _snapshot(_STATE["model"])
        before = _STATE["before"]
        assert after["value_range"] == before["value_range"], case.id
        assert len(after["weights"]) == len(before["weights"]) or not before["weights"]
        for old, new in zip(before["weights"], after["weights"]):
            np.testing.assert_array_equal(old, new, err_msg=case.id)


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
    assert len(tested) >= 90


def test_bad_input_integral_float_ratio_is_accepted():
    ssl = _ssl(ratio=2.0)
    assert ssl.unlabeled_ratio == 2
