"""GPU and scale on CPU: XLA, mixed precision, several devices, views made in
the step, and keras-ssl without TensorFlow.

Checks that need a fresh process (another backend, logical devices,
XLA_FLAGS, TensorFlow blocked) run a small script in a subprocess that prints
one `RESULT {json}` line; each script runs once per module and several tests
read its report. The in-process checks run on TensorFlow (the default test
backend) and are skipped under another one.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from conftest import tiny_cnn

import keras_ssl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
on_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="in-process TensorFlow checks"
)

# Shared by the subprocess scripts (and exec'd here for the in-process tests).
PRELUDE = '''
import json
import numpy as np
import keras
import keras_ssl
from keras import ops


def make_data(n=16, m=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 8, 8, 3)).astype("float32"), rng.integers(0, 4, n),
            rng.random((m, 8, 8, 3)).astype("float32"))


def net(batchnorm=False):
    layers = [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization())
    return keras.Sequential(layers + [keras.layers.Flatten(), keras.layers.Dense(4)])


def identity(images, training=True):
    return images


class Probe(keras_ssl.Algorithm):
    """One view and no loss; reports the mean logit on that view, so that
    steps on the same images and weights show whether the view changed."""

    views = ("a",)
    metric_names = ("probe",)

    def build_views(self, value_range):
        return {"a": keras_ssl.augment.weak_augmentation(value_range, translate=0.25)}

    def unlabeled_loss(self, logits, teacher_logits, step):
        probe = ops.mean(logits["a"][:, 0])
        return 0.0 * ops.mean(logits["a"]), {"probe": probe}, None


def probe_run(**compile_kwargs):
    """Three steps with frozen weights on the same unlabeled batch."""
    x, y, _ = make_data(4)
    u = np.repeat(x[:1], 8, axis=0)
    ssl = keras_ssl.SemiSupervisedModel(net(), Probe(), unlabeled_ratio=2,
                                        augment_on_device=True)
    ssl.compile(optimizer=keras.optimizers.SGD(0.0), **compile_kwargs)
    history = ssl.fit(x, y, unlabeled=u, batch_size=4, epochs=3, verbose=0)
    return ssl, history.history["probe"]


def zipped(x, y, u, batch, ratio):
    """Unshuffled labeled and unlabeled batches: every run sees the same data."""
    import tensorflow as tf

    labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True)
    unlabeled = tf.data.Dataset.from_tensor_slices(u).batch(batch * ratio,
                                                            drop_remainder=True)
    return tf.data.Dataset.zip((labeled, unlabeled.repeat()))


def history_of(history):
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}


def report(**values):
    print("RESULT " + json.dumps(values), flush=True)
'''

HELPERS = {}
exec(PRELUDE, HELPERS)  # noqa: S102 - the same helpers, for the in-process tests


def run_script(body, backend, env=None, block_tensorflow=False, tmp_path=None,
               timeout=420):
    """Run PRELUDE + body in a fresh Python; return its RESULT dict."""
    paths = [ROOT]
    if block_tensorflow:
        fake = os.path.join(str(tmp_path), "no_tensorflow", "tensorflow")
        os.makedirs(fake, exist_ok=True)
        with open(os.path.join(fake, "__init__.py"), "w") as f:
            f.write('raise ImportError("TensorFlow is blocked for this test")\n')
        paths.insert(0, os.path.dirname(fake))
    full_env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
                    PYTHONPATH=os.pathsep.join(paths), **(env or {}))
    head, _, rest = body.partition("#--- prelude ---\n")
    code = textwrap.dedent(head) + PRELUDE + textwrap.dedent(rest)
    proc = subprocess.run([sys.executable, "-c", code], check=False, env=full_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"script failed (rc={proc.returncode}):\n{proc.stdout[-2000:]}\n"
        f"{proc.stderr[-4000:]}"
    )
    return json.loads(lines[-1][len("RESULT "):])


def assert_same_run(one, two, rtol=1e-5, atol=1e-6):
    assert one["history"].keys() == two["history"].keys()
    for key in one["history"]:
        np.testing.assert_allclose(one["history"][key], two["history"][key],
                                   rtol=rtol, atol=atol, err_msg=key)
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(one["teacher"], two["teacher"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------- TensorFlow in-process


@on_tensorflow
def test_tf_jit_compile_stays_on_for_the_ssl_step(images):
    x, y, u = images
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), keras_ssl.FixMatch(threshold=0.5),
                                        unlabeled_ratio=2)
    ssl.compile(optimizer="adam", jit_compile=True)
    history = ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, verbose=0)
    # The views run in tf.data, outside the XLA-compiled step: Keras keeps jit.
    assert ssl.jit_compile is True
    assert all(np.isfinite(v).all() for v in history.history.values())
    assert int(ssl.ssl_step.numpy()) == 3


@on_tensorflow
def test_tf_refuses_xla_with_views_in_the_step():
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), augment_on_device=True)
    with pytest.raises(ValueError, match=r"cannot run with compile\(jit_compile=True\)"):
        ssl.compile(optimizer="adam", jit_compile=True)


@on_tensorflow
def test_tf_views_in_the_step_change_every_step():
    ssl, probes = HELPERS["probe_run"]()
    assert len(set(np.round(probes, 6))) == 3, probes
    assert ssl.jit_compile is False
    tracked = {id(v) for v in ssl.non_trainable_variables}
    seeds = [v for layer in ssl.view_layers for v in layer.variables]
    assert seeds and all(id(v) in tracked for v in seeds)


@on_tensorflow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_finite_with_float32_losses(policy):
    seen = {}

    class Spy(keras_ssl.FixMatch):
        def unlabeled_loss(self, logits, teacher_logits, step):
            out = super().unlabeled_loss(logits, teacher_logits, step)
            seen.update(logits=logits["weak"].dtype, loss=out[0].dtype)
            return out

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 8, 8, 3)).astype("uint8")
    y = rng.integers(0, 4, 8)
    u = rng.integers(0, 256, (32, 8, 8, 3)).astype("uint8")
    keras.mixed_precision.set_global_policy(policy)
    try:
        inner = keras.Sequential([
            keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4),
        ])
        ssl = keras_ssl.SemiSupervisedModel(inner, Spy(threshold=0.3), unlabeled_ratio=2,
                                            ema_teacher={"decay": 0.9})
        ssl.compile(optimizer="adam")
        history = ssl.fit(x, y, unlabeled=u, batch_size=4, epochs=2, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert inner.layers[-1].compute_dtype == policy.split("_")[1]
    if policy == "mixed_float16":
        assert isinstance(ssl.optimizer, keras.optimizers.LossScaleOptimizer)
    assert keras.backend.standardize_dtype(seen["logits"]) == "float32"
    assert keras.backend.standardize_dtype(seen["loss"]) == "float32"
    assert all(np.isfinite(v).all() for v in history.history.values()), history.history
    assert all(np.isfinite(w).all() for w in inner.get_weights())
    assert all(t.dtype == "float32" and np.isfinite(t.numpy()).all()
               for t in ssl.teacher_weights)


# -------------------------------------------- TensorFlow, two logical CPUs

MIRRORED = '''
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
#--- prelude ---
SIZES = []


class Sizes(keras_ssl.FixMatch):
    def unlabeled_loss(self, logits, teacher_logits, step):
        SIZES.append(int(logits["weak"].shape[0]))  # per replica, at trace time
        return super().unlabeled_loss(logits, teacher_logits, step)


x, y, u = make_data()
keras.utils.set_random_seed(0)
INIT = net().get_weights()


def train(strategy):
    SIZES.clear()
    with strategy.scope():
        inner = net()
        inner.set_weights(INIT)
        ssl = keras_ssl.SemiSupervisedModel(
            inner, Sizes(threshold=0.4, weak=identity, strong=identity),
            unlabeled_ratio=2, ema_teacher={"decay": 0.5, "warmup": False})
        ssl.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
    history = ssl.fit(zipped(x, y, u, batch=4, ratio=2), epochs=2, verbose=0)
    teacher = ssl.teacher_weights[0].value
    replicas = [np.asarray(v).tolist() for v in getattr(teacher, "values", [teacher])]
    return dict(history=history_of(history),
                weights=[w.tolist() for w in inner.get_weights()],
                teacher=[np.asarray(t.numpy()).tolist() for t in ssl.teacher_weights],
                teacher_replicas=replicas, sizes=sorted(set(SIZES)),
                step=int(ssl.ssl_step.numpy()),
                teacher_kind=type(teacher).__name__)


single = train(tf.distribute.get_strategy())
mirrored = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
report(single=single, mirrored=mirrored)
'''


@pytest.fixture(scope="module")
def mirrored_report():
    return run_script(MIRRORED, "tensorflow")


@pytest.mark.slow
def test_mirrored_strategy_matches_one_device(mirrored_report):
    single, mirrored = mirrored_report["single"], mirrored_report["mirrored"]
    # The global batch (4 labeled + 8 unlabeled) is split in two per step.
    assert single["sizes"] == [8] and mirrored["sizes"] == [4]
    assert 0.0 < single["history"]["mask_rate"][0] < 1.0
    assert_same_run(single, mirrored)


@pytest.mark.slow
def test_mirrored_strategy_keeps_teacher_and_step_in_sync(mirrored_report):
    mirrored = mirrored_report["mirrored"]
    assert mirrored["teacher_kind"] == "MirroredVariable"
    first, second = mirrored["teacher_replicas"]
    np.testing.assert_array_equal(first, second)
    assert mirrored["step"] == mirrored_report["single"]["step"] == 8


# ------------------------------------------------ JAX, two host devices

JAX_SCRIPT = '''
import jax
#--- prelude ---
SHARDINGS = []


class Shardings(keras_ssl.FixMatch):
    def unlabeled_loss(self, logits, teacher_logits, step):
        jax.debug.inspect_array_sharding(
            logits["weak"],
            callback=lambda s: SHARDINGS.append([len(s.device_set),
                                                 bool(s.is_fully_replicated)]))
        return super().unlabeled_loss(logits, teacher_logits, step)


x, y, u = make_data()
keras.utils.set_random_seed(0)
INIT = net(batchnorm=True).get_weights()


def train():
    SHARDINGS.clear()
    inner = net(batchnorm=True)
    inner.set_weights(INIT)
    ssl = keras_ssl.SemiSupervisedModel(
        inner, Shardings(threshold=0.4, weak=identity, strong=identity),
        unlabeled_ratio=2, ema_teacher={"decay": 0.5, "warmup": False})
    ssl.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"],
                jit_compile=True)
    history = ssl.fit(zipped(x, y, u, batch=4, ratio=2), epochs=2, verbose=0)
    teacher = ssl.teacher_weights[0].value
    return dict(history=history_of(history), jit=ssl.jit_compile,
                weights=[w.tolist() for w in inner.get_weights()],
                teacher=[np.asarray(t.numpy()).tolist() for t in ssl.teacher_weights],
                teacher_replicated=bool(teacher.sharding.is_fully_replicated),
                teacher_devices=len(teacher.sharding.device_set),
                step=int(ssl.ssl_step.numpy()), shardings=SHARDINGS)


single = train()
with keras.distribution.DataParallel(devices=jax.devices()).scope():
    parallel = train()
_, probes = probe_run(jit_compile=True)

keras.mixed_precision.set_global_policy("mixed_bfloat16")
# A light strong view (the default one takes minutes to compile on 2 CPU cores).
light = keras_ssl.augment.weak_augmentation((0, 1), translate=0.25)
ssl = keras_ssl.SemiSupervisedModel(net(), keras_ssl.FixMatch(threshold=0.3, strong=light),
                                    unlabeled_ratio=2, augment_on_device=True)
ssl.compile(optimizer="adam")
bf16 = history_of(ssl.fit(x[:8], y[:8], unlabeled=u, batch_size=4, epochs=1, verbose=0))
report(devices=len(jax.devices()), single=single, parallel=parallel, probes=probes,
       bf16=bf16)
'''


@pytest.fixture(scope="module")
def jax_report():
    return run_script(JAX_SCRIPT, "jax",
                      env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})


@pytest.mark.slow
def test_jax_data_parallel_matches_one_device(jax_report):
    assert jax_report["devices"] == 2
    single, parallel = jax_report["single"], jax_report["parallel"]
    assert single["jit"] is True and parallel["jit"] is True
    # The unlabeled logits are split over the two devices, not replicated.
    assert parallel["shardings"] and all(
        s == [2, False] for s in parallel["shardings"]), parallel["shardings"]
    assert 0.0 < single["history"]["mask_rate"][0] < 1.0
    assert_same_run(single, parallel)


@pytest.mark.slow
def test_jax_data_parallel_teacher_replicated(jax_report):
    parallel = jax_report["parallel"]
    assert parallel["teacher_replicated"] and parallel["teacher_devices"] == 2
    assert parallel["step"] == 8


@pytest.mark.slow
def test_jax_views_in_the_jitted_step_change_every_step(jax_report):
    # If the views' seed state were not model state, jax.jit would freeze it
    # at trace time and the three steps would see the same view.
    probes = jax_report["probes"]
    assert len(set(np.round(probes, 6))) == 3, probes


@pytest.mark.slow
def test_jax_mixed_bfloat16_with_views_in_the_step(jax_report):
    assert all(np.isfinite(v).all() for v in jax_report["bf16"].values())


# ---------------------------------------------- without TensorFlow installed

NO_TF = '''
import sys
#--- prelude ---
assert keras_ssl.data.tensorflow_available() is False
x, y, u = make_data(12, 40)
runs = {}
# A light strong view: the default RandAugment view takes minutes to compile
# under jax.jit on two busy cores (benchmarks/gpu_check.py --quick runs it).
light = keras_ssl.augment.weak_augmentation((0, 1), translate=0.25)
for algorithm in (keras_ssl.FixMatch(threshold=0.3, strong=light), keras_ssl.MeanTeacher()):
    ssl = keras_ssl.SemiSupervisedModel(net(), algorithm, unlabeled_ratio=2,
                                        augment_on_device=True)
    ssl.compile(optimizer="adam", metrics=["accuracy"])
    history = ssl.fit(x, y, unlabeled=u, unlabeled_labels=np.zeros(40, "int64"),
                      batch_size=4, epochs=2, verbose=0, validation_data=(x, y))
    runs[type(algorithm).__name__] = dict(history=history_of(history),
                                          step=int(ssl.ssl_step.numpy()))
_, probes = probe_run()
refused = ""
try:
    plain = keras_ssl.SemiSupervisedModel(net())
    plain.compile(optimizer="adam")
    plain.fit(x, y, unlabeled=u, batch_size=4, verbose=0)
except keras_ssl.InputError as error:
    refused = str(error)
report(runs=runs, probes=probes, refused=refused,
       tensorflow_loaded="tensorflow" in sys.modules)
'''


@pytest.fixture(scope="module", params=["jax", "torch"])
def no_tf_report(request, tmp_path_factory):
    return run_script(NO_TF, request.param, block_tensorflow=True,
                      tmp_path=tmp_path_factory.mktemp("no_tf"))


@pytest.mark.slow
def test_import_and_fit_without_tensorflow(no_tf_report):
    assert no_tf_report["tensorflow_loaded"] is False
    for name, run in no_tf_report["runs"].items():
        # 12 labeled images at batch 4: 3 steps an epoch, 2 epochs.
        assert run["step"] == 6, name
        for key in ("loss", "sup_loss", "unsup_loss", "pseudo_label_accuracy",
                    "val_loss", "accuracy"):
            assert np.isfinite(run["history"][key]).all(), (name, key)
    assert "mask_rate" in no_tf_report["runs"]["FixMatch"]["history"]
    assert "augment_on_device=True" in no_tf_report["refused"]


@pytest.mark.slow
def test_views_in_the_step_change_every_step_without_tensorflow(no_tf_report):
    probes = no_tf_report["probes"]
    assert len(set(np.round(probes, 6))) == 3, probes


# ---------------------------------------------------------------- the feed


def test_array_source_batches():
    x, y, u = HELPERS["make_data"](10, 7)
    source = keras_ssl.data.ArraySource(x, y, None, 4, u, 8, shuffle=False)
    assert len(source) == 3
    batches = [source[i] for i in range(3)]
    # Every labeled batch is full: the epoch shows all 10 images, then fills
    # its last batch from the next pass (no partial batch: no new shape).
    assert [b[0]["labeled"].shape[0] for b in batches] == [4, 4, 4]
    inputs, labels = batches[2]
    np.testing.assert_array_equal(inputs["labeled"], x[[8, 9, 0, 1]])
    np.testing.assert_array_equal(labels, y[[8, 9, 0, 1]])
    np.testing.assert_array_equal(source[0][1], y[:4])  # a new epoch starts a new pass
    # The unlabeled stream is endless: 8 images per batch from 7, reshuffled.
    first, second = source[0][0]["unlabeled"], source[1][0]["unlabeled"]
    assert first.shape == second.shape == (8, 8, 8, 3)
    assert first.dtype == np.float32
    seen = {tuple(np.round(img.ravel()[:3], 6)) for img in np.concatenate([first, second])}
    assert seen == {tuple(np.round(img.ravel()[:3], 6)) for img in u}


def test_array_source_streams_full_batches_with_steps_per_epoch():
    x, y, u = HELPERS["make_data"](10, 7)
    source = keras_ssl.data.ArraySource(x, y, None, 4, u, 8, steps_per_epoch=5, seed=0)
    labels = np.concatenate([source[i % 3][1] for i in range(5)])  # 20 = two passes
    assert all(source[i][0]["labeled"].shape[0] == 4 for i in range(3))
    np.testing.assert_array_equal(np.sort(labels[:10]), np.sort(y))
    np.testing.assert_array_equal(np.sort(labels[10:]), np.sort(y))
    small = keras_ssl.data.ArraySource(x[:3], y[:3], None, 4, u, 8)  # fewer than a batch
    assert len(small) == 1 and small[0][0]["labeled"].shape[0] == 3


# ------------------------------------------------- two workers on localhost


@pytest.mark.slow
def test_multi_worker_example_runs_two_local_workers():
    """examples/multi_worker.py --launch 2: two TensorFlow processes, one each."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "multi_worker.py"), "--launch", "2",
         "--steps", "4", "--global-batch", "8"],
        check=False, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    reports = [json.loads(line) for line in proc.stdout.splitlines()
               if line.startswith('{"worker"')]
    assert sorted(r["worker"] for r in reports) == [0, 1]
    first, second = reports
    assert first["replicas_in_sync"] == 2 and first["per_replica_batch"] == 4
    assert first["ssl_step"] == second["ssl_step"] == 4
    # The weights and the teacher stay the same on both workers.
    assert first["teacher_checksum"] == second["teacher_checksum"]
    assert first["test_accuracy"] == second["test_accuracy"]
