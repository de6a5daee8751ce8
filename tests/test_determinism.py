"""Reproducibility: the same seed gives the same weights, bit for bit, on CPU.

What is needed: `keras.utils.set_random_seed(seed)` before building the model
and `tf.config.experimental.enable_op_determinism()` on every backend (the
input pipeline, augmentations included, is `tf.data`, whose parallel map draws
random numbers in a nondeterministic order without it). See
docs/reproducibility.md for what was observed on each backend.

The fast test runs on this process's backend. The `slow` ones repeat it on
the two other backends in subprocesses; this file is also that script:
`KERAS_BACKEND=jax python tests/test_determinism.py`.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras_ssl


def enable_determinism():
    """Turn TF op determinism on; return a function that restores the setting."""
    try:
        import tensorflow as tf
        from tensorflow.python.framework import config as tf_config
    except ImportError:  # pragma: no cover - TF is a dependency
        return lambda: None
    was_enabled = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    return (lambda: None) if was_enabled else tf_config.disable_op_determinism


def train(seed, algorithm="fixmatch", steps=2, epochs=2):
    """A short SSL run through the full pipeline; returns weights and losses.

    Dropout, BatchNorm, shuffling, the default weak and strong views
    (RandAugment and cutout) and an epoch boundary are all on the path.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (24, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 24)
    u = rng.uniform(0, 1, (96, 8, 8, 3)).astype("float32")
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3),
        keras.layers.BatchNormalization(),
        keras.layers.Dropout(0.2),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])
    options = {"threshold": 0.4} if algorithm == "fixmatch" else {}
    algo = keras_ssl.algorithms.get(algorithm, steps=steps * epochs, **options)
    ssl = keras_ssl.SemiSupervisedModel(model, algo, unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    history = ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=epochs,
                      steps_per_epoch=steps, verbose=0)
    weights = [keras.ops.convert_to_numpy(v) for v in ssl.variables]
    return weights, history.history


def digest(weights):
    return hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes()
                                   for w in weights)).hexdigest()


@pytest.fixture
def deterministic():
    restore = enable_determinism()
    yield
    restore()


@pytest.mark.parametrize("algorithm", [
    # FixMatch in the fast tier; the others, same code path, in the full run.
    name if name == "fixmatch" else pytest.param(name, marks=pytest.mark.slow)
    for name in keras_ssl.algorithms.names()
])
def test_same_seed_same_weights(deterministic, algorithm):
    first, first_logs = train(7, algorithm)
    second, second_logs = train(7, algorithm)
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert first_logs == second_logs
    if algorithm == "fixmatch":
        # Not vacuous: another seed trains to other weights.
        other, _ = train(8, algorithm, epochs=1)
        assert digest(other) != digest(first)


def _run_on(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, __file__], check=False, capture_output=True, text=True,
                         env=env, timeout=600)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_same_seed_same_weights_in_subprocess(backend):
    if backend == keras.backend.backend():
        pytest.skip("covered in this process by test_same_seed_same_weights")
    pytest.importorskip(backend)
    result = _run_on(backend)
    assert result["backend"] == backend
    assert result["first"] == result["second"]


if __name__ == "__main__":
    enable_determinism()
    first = digest(train(7, "fixmatch")[0])
    second = digest(train(7, "fixmatch")[0])
    print("RESULT " + json.dumps({"backend": keras.backend.backend(),
                                  "first": first, "second": second}))
