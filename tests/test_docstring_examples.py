"""Every code example in a public docstring runs, on tiny data.

The examples are collected from the docstrings of the public modules
(classes, functions and their public methods) and run one by one in a fresh
namespace that holds the names they use (`model`, `x_labeled`, `u`, ...) as
tiny arrays and a small CNN. So that each runs in seconds, `fit` is capped at
2 epochs of at most 2 steps, `keras.applications.MobileNet` builds the small
CNN, and steps run eagerly. An example that cannot run here is listed in
`NOT_RUN` with the reason and where it is tested instead.
"""

import inspect
import os
import re
import textwrap

import keras
import numpy as np
import pytest

import keras_ssl
from keras_ssl.algorithms import base

MODULES = [keras_ssl, keras_ssl.algorithms, keras_ssl.callbacks, keras_ssl.losses,
           keras_ssl.augment, keras_ssl.models, keras_ssl.folders, keras_ssl.data,
           keras_ssl.runner, keras_ssl.plots, keras_ssl.batchnorm]

NOT_RUN = {
    "keras_ssl.runner.train_from_folders": "a timed run over folders; "
                                           "tests/test_cli_folders.py runs it",
    "keras_ssl.runner.evaluate_folder": "needs a trained run's folder; "
                                        "tests/test_cli_folders.py runs it",
    "keras_ssl.runner.predict_folder": "needs a trained run's folder; "
                                       "tests/test_cli_folders.py runs it",
}


def _objects():
    seen = set()
    for module in MODULES:
        names = getattr(module, "__all__", None) or [
            n for n in vars(module) if not n.startswith("_")]
        for name in names:
            obj = getattr(module, name, None)
            if obj is None or inspect.ismodule(obj) or id(obj) in seen:
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not getattr(obj, "__module__", "").startswith("keras_ssl"):
                continue
            seen.add(id(obj))
            yield f"{obj.__module__}.{obj.__qualname__}", obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not callable(member):
                        continue
                    yield f"{obj.__module__}.{obj.__qualname__}.{attr}", member


def _examples():
    found = {}
    for name, obj in _objects():
        blocks = re.findall(r"```python\n(.*?)```", obj.__doc__ or "", re.DOTALL)
        for i, block in enumerate(blocks):
            found[f"{name}[{i}]"] = textwrap.dedent(block)
    return found


EXAMPLES = _examples()


def _small_cnn(classes=10):
    layers = keras.layers
    return keras.Sequential([
        keras.Input((None, None, 3)),
        layers.Rescaling(1 / 255.0),
        layers.Conv2D(4, 3, padding="same"), layers.BatchNormalization(), layers.ReLU(),
        layers.GlobalAveragePooling2D(), layers.Dense(classes)])


@pytest.fixture
def namespace(tmp_path, monkeypatch):
    import tensorflow as tf

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)

    def images(n, size=32):
        return rng.integers(0, 256, (n, size, size, 3)).astype("uint8")

    def labels(n):
        return np.arange(n) % 10

    def capped(fit):
        def wrapper(self, *args, **kwargs):
            kwargs["epochs"] = min(int(kwargs.get("epochs", 1)), 2)
            kwargs["initial_epoch"] = min(int(kwargs.get("initial_epoch", 0)), 1)
            if kwargs.get("steps_per_epoch"):
                kwargs["steps_per_epoch"] = min(int(kwargs["steps_per_epoch"]), 2)
            kwargs.setdefault("verbose", 0)
            return fit(self, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(keras_ssl.SemiSupervisedModel, "fit",
                        capped(keras_ssl.SemiSupervisedModel.fit))
    monkeypatch.setattr(keras.Model, "fit", capped(keras.Model.fit))
    monkeypatch.setattr(keras.applications, "MobileNet",
                        lambda classes=10, **kwargs: _small_cnn(classes))
    tf.config.run_functions_eagerly(True)
    keras.utils.set_random_seed(0)
    for folder, count in (("photos/labeled/cat", 6), ("photos/labeled/dog", 6),
                          ("photos/unlabeled", 12), ("photos/test/cat", 2),
                          ("photos/test/dog", 2), ("photos/new", 3)):
        os.makedirs(folder)
        for i, image in enumerate(images(count, 24)):
            keras.utils.save_img(os.path.join(folder, f"{i}.png"), image)
    x, y, u = images(16), labels(16), images(48)
    model = _small_cnn()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    backbone = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Rescaling(1 / 255.0),
                                 keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()])
    ssl = keras_ssl.SemiSupervisedModel(keras.Sequential(
        [backbone, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]))
    ssl.compile(optimizer="adam")
    names = {
        "keras": keras, "keras_ssl": keras_ssl, "np": np, "tf": tf,
        "x": x, "y": y, "u": u, "x_labeled": x, "y_labeled": y, "x_unlabeled": u,
        "x_train": x, "x_val": images(8), "y_val": labels(8), "x_test": images(8),
        "y_test": labels(8), "x_new": images(4), "images": images(4),
        "logits": np.array([[0.5, 1.0, 2.0]], "float32"),
        "unlabeled_dataset": tf.data.Dataset.from_tensor_slices(u).batch(8),
        "model": model, "classifier": _small_cnn(), "backbone": backbone, "ssl": ssl,
    }
    yield names
    tf.config.run_functions_eagerly(False)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_example_runs(name, namespace):
    owner = name.rsplit("[", 1)[0]
    if owner in NOT_RUN:
        pytest.skip(NOT_RUN[owner])
    registered = set(base._REGISTRY)
    try:
        exec(compile(EXAMPLES[name], name, "exec"), namespace)  # noqa: S102
    finally:
        for added in set(base._REGISTRY) - registered:
            del base._REGISTRY[added]


def test_the_examples_are_found():
    assert len(EXAMPLES) >= 25
    assert any(name.startswith("keras_ssl.model.SemiSupervisedModel[") for name in EXAMPLES)
    assert set(NOT_RUN) <= {name.rsplit("[", 1)[0] for name in EXAMPLES}
