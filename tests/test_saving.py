"""Saving: `.keras` round trips on every backend, exports, configs.

The backend is fixed per process, so the two backends this process does not
run are checked in one subprocess each (KERAS_BACKEND set). That subprocess
also loads the plain models exported here with `export_model` while keras_ssl
cannot be imported, then the full `.keras` file saved here on this backend.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_ssl

ROOT = Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()
OTHER_BACKENDS = [b for b in ("tensorflow", "jax", "torch") if b != BACKEND]


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 16)
    u = rng.uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    return x, y, u


def _classifier():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3),
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])


def _algorithm(name):
    return keras_ssl.algorithms.get(name, steps=10, flip=False)


def _trained(name, steps=2):
    x, y, u = _data()
    keras.utils.set_random_seed(1)
    ssl = keras_ssl.SemiSupervisedModel(_classifier(), _algorithm(name), unlabeled_ratio=2)
    ssl.compile(optimizer="adam", metrics=["accuracy"])
    ssl.fit(x, y, unlabeled=u, batch_size=8, steps_per_epoch=steps, verbose=0)
    return ssl


def _same_values(a, b):
    a, b = list(a), list(b)
    return len(a) == len(b) and all(
        np.array_equal(_numpy(v), _numpy(w)) for v, w in zip(a, b)
    )


ALGORITHMS = keras_ssl.algorithms.names()


@pytest.mark.parametrize("name", ALGORITHMS)
def test_keras_file_roundtrip_and_continue_ssl_training(name, tmp_path):
    x, y, u = _data()
    ssl = _trained(name)
    path = tmp_path / "m.keras"
    ssl.save(path)
    loaded = keras.models.load_model(path)

    assert type(loaded) is keras_ssl.SemiSupervisedModel
    assert type(loaded.algorithm) is type(ssl.algorithm)
    assert loaded.algorithm.get_config() == ssl.algorithm.get_config()
    assert tuple(loaded.value_range) == tuple(ssl.value_range)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), ssl.predict(x, verbose=0))
    # Every variable comes back: weights, BatchNorm statistics, EMA teacher,
    # step counter, algorithm state, and the optimizer's slots.
    assert _same_values(loaded.variables, ssl.variables)
    assert len(loaded.teacher_weights) == len(ssl.teacher_weights)
    assert _same_values(loaded.teacher_weights, ssl.teacher_weights)
    assert loaded.compiled
    assert _same_values(loaded.optimizer.variables, ssl.optimizer.variables)

    # Training goes on in SSL mode from where it stopped.
    before = [_numpy(w).copy() for w in loaded.model.trainable_weights]
    step = int(_numpy(loaded.ssl_step.value))
    history = loaded.fit(x, y, unlabeled=u, batch_size=8, steps_per_epoch=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert "unsup_loss" in history.history
    assert int(_numpy(loaded.ssl_step.value)) == step + 2
    assert int(_numpy(loaded.optimizer.iterations.value)) == step + 2
    after = [_numpy(w) for w in loaded.model.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_export_model_student_and_teacher():
    ssl = _trained("meanteacher", steps=3)
    x, _, _ = _data()
    student = ssl.export_model("student")
    teacher = ssl.export_model("teacher")
    for exported in (student, teacher):
        assert type(exported) is keras.Sequential
        assert not any("keras_ssl" in type(layer).__module__ for layer in exported.layers)
    np.testing.assert_array_equal(student.predict(x, verbose=0), ssl.model.predict(x, verbose=0))
    assert _same_values(teacher.trainable_variables, ssl.teacher_weights)
    assert _same_values(teacher.non_trainable_variables, ssl.model.non_trainable_variables)
    assert not np.allclose(teacher.predict(x, verbose=0), student.predict(x, verbose=0))
    # A snapshot: more training changes the wrapped model, not the export.
    snapshot = [_numpy(w).copy() for w in student.weights]
    x, y, u = _data()
    ssl.fit(x, y, unlabeled=u, batch_size=8, steps_per_epoch=1, verbose=0)
    assert _same_values(student.weights, snapshot)


def test_export_model_errors():
    ssl = keras_ssl.SemiSupervisedModel(_classifier(), keras_ssl.FixMatch(), ema_decay=None)
    with pytest.raises(ValueError, match=r"export_model\(which='teacher'\): this model "
                                         r"keeps no EMA of its weights"):
        ssl.export_model("teacher")
    with pytest.raises(ValueError, match=r"must be 'student' or 'teacher'; received 'ema'"):
        ssl.export_model("ema")


def test_algorithm_configs_roundtrip():
    algorithms = [
        keras_ssl.FixMatch(threshold=0.8, unlabeled_weight=2.0, temperature=0.5, flip=False),
        keras_ssl.MeanTeacher(ema_decay=0.99, consistency_weight=5.0, rampup_steps=7,
                              flip=False),
    ]
    algorithms.append(keras_ssl.algorithms.FreeMatch(momentum=0.9, temperature=0.5))
    algorithms += [keras_ssl.algorithms.get(name) for name in keras_ssl.algorithms.names()]
    for algorithm in algorithms:
        config = keras.saving.serialize_keras_object(algorithm)
        config = json.loads(json.dumps(config))  # what a .keras file holds
        restored = keras.saving.deserialize_keras_object(config)
        assert type(restored) is type(algorithm)
        assert restored.get_config() == algorithm.get_config()
        assert type(algorithm).from_config(algorithm.get_config()).get_config() == (
            algorithm.get_config()
        )


def test_semi_supervised_model_config_roundtrip():
    ssl = keras_ssl.SemiSupervisedModel(
        _classifier(), keras_ssl.MeanTeacher(rampup_steps=5), unlabeled_ratio=3,
        value_range="unit", augment_labeled=False,
    )
    config = json.loads(json.dumps(ssl.get_config()))
    restored = keras_ssl.SemiSupervisedModel.from_config(config)
    assert json.loads(json.dumps(restored.get_config())) == config
    assert restored.unlabeled_ratio == 3 and restored.augment_labeled is False


def test_callbacks_hold_no_saved_state():
    # Like Keras's own callbacks, keras-ssl's have no config: what a checkpoint
    # must hold lives in the model. Each is built from its documented arguments
    # and keeps them.
    x = np.zeros((4, 8, 8, 1), "float32")
    built = [
        keras_ssl.callbacks.EMATeacher(decay=0.99, warmup=False),
        keras_ssl.callbacks.PlateauPhaseSwitch(monitor="val_accuracy", patience=2),
        keras_ssl.callbacks.BatchNormWarmup(x, steps=3),
        keras_ssl.callbacks.TimeLimit(minutes=2),
        keras_ssl.callbacks.CosineDecayByTime(minutes=3, initial_learning_rate=0.1),
    ]
    assert {type(c).__name__ for c in built} == {
        name for name in keras_ssl.callbacks.__all__ if name[0].isupper()
    }
    for callback in built:
        assert isinstance(callback, keras.callbacks.Callback)
        assert not hasattr(callback, "get_config")
    assert built[0].decay == 0.99 and built[1].patience == 2 and built[2].steps == 3
    assert built[3].minutes == 2.0
    assert built[4].seconds == 180.0 and built[4].initial == 0.1


# The other backends, in subprocesses ----------------------------------------

_OTHER_BACKEND_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras

    folder = sys.argv[1]
    x = np.load(folder + "/x.npy")
    out = {"backend": keras.backend.backend()}

    # 1. The exported plain models load with keras alone: keras_ssl is made
    # unimportable meanwhile, so any attempt to import it would fail.
    sys.modules["keras_ssl"] = None
    for which in ("student", "teacher"):
        model = keras.models.load_model(folder + f"/{which}.keras")
        expected = np.load(folder + f"/{which}.npy")
        out[which + "_max_diff"] = float(np.abs(model.predict(x, verbose=0) - expected).max())
    out["keras_ssl_imported_for_exports"] = any(
        m.startswith("keras_ssl") and sys.modules[m] is not None for m in sys.modules)
    del sys.modules["keras_ssl"]

    # 2. The full model saved on the parent's backend loads here.
    import keras_ssl
    ssl = keras.models.load_model(folder + "/ssl.keras")
    out["ssl_max_diff"] = float(np.abs(ssl.predict(x, verbose=0)
                                       - np.load(folder + "/ssl.npy")).max())

    # 3. A round trip on this backend, then SSL training after loading.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, len(x))
    u = rng.uniform(0, 1, (64,) + x.shape[1:]).astype("float32")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization(), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.MeanTeacher(rampup_steps=3,
                                        flip=False), unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    ssl.fit(x, y, unlabeled=u, batch_size=8, steps_per_epoch=2, verbose=0)
    ssl.save(folder + "/here.keras")
    loaded = keras.models.load_model(folder + "/here.keras")
    out["roundtrip_equal"] = bool(np.array_equal(loaded.predict(x, verbose=0),
                                                 ssl.predict(x, verbose=0)))
    num = keras.ops.convert_to_numpy
    out["variables_equal"] = all(np.array_equal(num(a), num(b))
                                 for a, b in zip(loaded.variables, ssl.variables))
    out["teacher_equal"] = len(loaded.teacher_weights) == 6 and all(
        np.array_equal(num(a), num(b))
        for a, b in zip(loaded.teacher_weights, ssl.teacher_weights))
    out["compiled"] = bool(loaded.compiled)
    history = loaded.fit(x, y, unlabeled=u, batch_size=8, steps_per_epoch=2, verbose=0)
    out["continued_losses"] = [float(v) for v in history.history["loss"]]
    out["has_unsup_loss"] = "unsup_loss" in history.history
    out["ssl_step"] = int(num(loaded.ssl_step.value))
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_keras_file_roundtrip_on_other_backend(backend, tmp_path):
    pytest.importorskip({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend])
    ssl = _trained("meanteacher", steps=3)
    x, _, _ = _data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "ssl.npy", ssl.predict(x, verbose=0))
    ssl.save(tmp_path / "ssl.keras")
    for which in ("student", "teacher"):
        exported = ssl.export_model(which)
        exported.save(tmp_path / f"{which}.keras")
        np.save(tmp_path / f"{which}.npy", exported.predict(x, verbose=0))

    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run(
        [sys.executable, "-c", _OTHER_BACKEND_SCRIPT, str(tmp_path)],
        check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["backend"] == backend
    assert out["keras_ssl_imported_for_exports"] is False
    assert out["student_max_diff"] < 1e-5 and out["teacher_max_diff"] < 1e-5
    assert out["ssl_max_diff"] < 1e-5
    assert out["roundtrip_equal"] and out["variables_equal"] and out["teacher_equal"]
    assert out["compiled"] and out["has_unsup_loss"]
    assert np.isfinite(out["continued_losses"]).all()
    assert out["ssl_step"] == 4
