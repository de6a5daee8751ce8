"""GPU check: speed of the SSL step and a short accuracy run, on JAX, without TensorFlow.

One prepared run for a machine with an NVIDIA GPU, JAX and no TensorFlow and
no network (`benchmarks/gpu_check.sh` installs Keras from carried wheels and
runs this file). Data are numpy arrays made here; `fit` feeds them through
`keras_ssl.data.ArraySource` and the views are made inside the step
(`augment_on_device=True`), the path keras-ssl takes without TensorFlow.

For each model (a small CNN and `keras.applications.MobileNet` at 32x32) and
each mode it prints steps/s and images/s of the FixMatch step at batch 64 and
unlabeled ratio 7 (64 labeled + 448 unlabeled images a step; the model sees
64 + 2 x 448 = 960 images, the weak and the strong view of each unlabeled
one):

- `step`: `train_on_batch` on one batch already on the device: the compiled
  step alone.
- `fit`: `fit` on numpy arrays: the step plus the host-side feed (numpy
  indexing and the copy to the device, in the training thread).

Modes:

- `on_device`: FixMatch's default views (flip + translation; + per-image
  RandAugment + cutout for the strong one) made in the step.
- `no_aug`: identity views: the cost of the step without any augmentation,
  what it would cost if the views came ready-made from a pipeline.
- `tf_data`: views made in the `tf.data` pipeline on the CPU (the default of
  `SemiSupervisedModel`); only where TensorFlow can be imported.

Then a short accuracy run: a synthetic 10-class stripes task (orientation x
frequency, random phase and colour, noise), 4 labeled images per class,
supervised vs FixMatch (views on the device) for the same number of steps.

Usage:
    KERAS_BACKEND=jax python benchmarks/gpu_check.py [--quick] [--out FILE]
        [--block-tensorflow] [--models cnn,mobilenet] [--modes on_device,no_aug]

`--quick` uses tiny step counts (and batch 16) to prove the script works end
to end on a CPU; its numbers mean nothing. `--block-tensorflow` makes
`import tensorflow` fail, to rehearse the GPU machine on one that has it.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny step counts and batch 16: proves it runs (CPU)")
    parser.add_argument("--batch", type=int, default=None, help="labeled batch (64)")
    parser.add_argument("--ratio", type=int, default=7, help="unlabeled ratio (7)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (5)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (50)")
    parser.add_argument("--accuracy-steps", type=int, default=None,
                        help="steps of each accuracy run (600)")
    parser.add_argument("--models", default="cnn,mobilenet")
    parser.add_argument("--modes", default="on_device,no_aug,tf_data")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--block-tensorflow", action="store_true",
                        help="make `import tensorflow` fail (rehearse the GPU machine)")
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    quick = args.quick
    args.batch = args.batch or (16 if quick else 64)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 5)
    args.steps = args.steps or (2 if quick else 50)
    args.accuracy_steps = args.accuracy_steps or (10 if quick else 600)
    return args


def block_tensorflow():
    """Put a `tensorflow` package that raises ImportError first on sys.path."""
    folder = tempfile.mkdtemp(prefix="no_tensorflow_")
    os.makedirs(os.path.join(folder, "tensorflow"))
    with open(os.path.join(folder, "tensorflow", "__init__.py"), "w") as f:
        f.write('raise ImportError("TensorFlow is blocked by gpu_check.py")\n')
    sys.path.insert(0, folder)


ARGS = parse_args()
if ARGS.block_tensorflow:
    block_tensorflow()
os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, ROOT)

import keras
import numpy as np

import keras_ssl

CLASSES = 10
SHAPE = (32, 32, 3)


def log(*parts):
    print(*parts, flush=True)


# ------------------------------------------------------------------ models


def small_cnn():
    layers = keras.layers
    blocks = [keras.Input(SHAPE), layers.Rescaling(1 / 255.0)]
    for filters in (32, 32, "pool", 64, 64, "pool", 128):
        if filters == "pool":
            blocks.append(layers.MaxPooling2D())
            continue
        blocks += [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                   layers.BatchNormalization(), layers.ReLU()]
    blocks += [layers.GlobalAveragePooling2D(), layers.Dense(CLASSES)]
    return keras.Sequential(blocks, name="small_cnn")


def mobilenet():
    net = keras.applications.MobileNet(input_shape=SHAPE, weights=None, classes=CLASSES,
                                       classifier_activation=None)
    # MobileNet expects pixels in [-1, 1]; the data are uint8-range floats.
    return keras.Sequential([keras.Input(SHAPE), keras.layers.Rescaling(1 / 127.5, -1.0),
                             net], name="mobilenet_32")


MODELS = {"cnn": small_cnn, "mobilenet": mobilenet}


def identity(images, training=True):
    return images


def ssl_model(model, mode, threshold=0.95):
    if mode == "no_aug":
        algorithm = keras_ssl.FixMatch(threshold=threshold, weak=identity, strong=identity)
    else:
        algorithm = keras_ssl.FixMatch(threshold=threshold)
    ssl = keras_ssl.SemiSupervisedModel(
        model, algorithm, unlabeled_ratio=ARGS.ratio, value_range=(0, 255),
        augment_on_device=(mode != "tf_data"),
    )
    ssl.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True),
                metrics=["accuracy"])
    return ssl


# -------------------------------------------------------------------- data


def random_images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n,) + SHAPE).astype("float32")


def stripes(n, seed):
    """10 classes: (horizontal | vertical) x 5 frequencies; flip-safe."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    frequency = np.array([1, 2, 3, 4, 6])[labels % 5]
    vertical = labels >= 5
    phase = rng.uniform(0, 2 * np.pi, n)
    grid = np.arange(SHAPE[0]) * 2 * np.pi / SHAPE[0]
    wave = np.sin(grid[None, :] * frequency[:, None] + phase[:, None])  # (n, 32)
    pattern = np.where(vertical[:, None, None], wave[:, None, :], wave[:, :, None])
    colour = rng.uniform(0.3, 1.0, (n, 1, 1, 3))
    images = 127.5 + 100 * pattern[..., None] * colour
    images += rng.normal(0, 20, images.shape)
    return np.clip(images, 0, 255).astype("float32"), labels


# ------------------------------------------------------------- measurements


class _Clock(keras.callbacks.Callback):
    """Times the batches after `warmup`, waiting for the device at both ends."""

    def __init__(self, warmup):
        super().__init__()
        self.warmup, self.start, self.end, self.count = warmup, None, None, 0

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 < self.warmup:
            return
        float(logs["loss"])  # wait for the device
        now = time.perf_counter()
        if self.start is None:
            self.start = now
        else:
            self.end, self.count = now, self.count + 1


def throughput(name, mode):
    keras.utils.set_random_seed(0)
    batch, ratio = ARGS.batch, ARGS.ratio
    x = random_images(batch * 4, 1)
    y = np.random.default_rng(2).integers(0, CLASSES, len(x))
    u = random_images(batch * ratio * 2, 3)
    ssl = ssl_model(MODELS[name](), mode, threshold=0.5)
    images = batch * (1 + ratio)
    started = time.perf_counter()
    clock = _Clock(ARGS.warmup)
    ssl.fit(x, y, unlabeled=u, batch_size=batch, epochs=1, verbose=0,
            steps_per_epoch=ARGS.warmup + ARGS.steps + 1, callbacks=[clock])
    first_fit = time.perf_counter() - started
    fit_rate = clock.count / (clock.end - clock.start)
    result = {"model": name, "mode": mode, "params": ssl.model.count_params(),
              "fit_steps_per_s": fit_rate, "fit_images_per_s": fit_rate * images,
              "first_fit_s_with_compile": first_fit}
    if mode != "tf_data":
        # The compiled step alone, on a batch already on the device.
        import jax

        batch_x = {"labeled": jax.device_put(x[:batch]),
                   "unlabeled": jax.device_put(u[:batch * ratio])}
        batch_y = jax.device_put(y[:batch])
        for _ in range(ARGS.warmup):
            ssl.train_on_batch(batch_x, batch_y)
        started = time.perf_counter()
        for _ in range(ARGS.steps):
            logs = ssl.train_on_batch(batch_x, batch_y, return_dict=True)
        step_rate = ARGS.steps / (time.perf_counter() - started)
        result.update(step_steps_per_s=step_rate, step_images_per_s=step_rate * images,
                      finite=bool(np.isfinite(logs["loss"])))
    return result


def accuracy_run():
    x_all, y_all = stripes(4000 if ARGS.quick else 22000, seed=10)
    x_test, y_test = stripes(2000, seed=11)
    per_class = 4
    picked = np.concatenate([np.flatnonzero(y_all == c)[:per_class] for c in range(CLASSES)])
    x_lab, y_lab = x_all[picked], y_all[picked]
    unlabeled = np.delete(x_all, picked, axis=0)
    results = {}
    for label, use_unlabeled in (("supervised", False), ("fixmatch", True)):
        keras.utils.set_random_seed(0)
        ssl = ssl_model(small_cnn(), "on_device", threshold=0.95)
        started = time.perf_counter()
        history = ssl.fit(x_lab, y_lab, unlabeled=unlabeled if use_unlabeled else None,
                          batch_size=min(ARGS.batch, len(x_lab)), epochs=1, verbose=0,
                          steps_per_epoch=ARGS.accuracy_steps)
        seconds = time.perf_counter() - started
        _, accuracy = ssl.evaluate(x_test, y_test, batch_size=500, verbose=0)
        results[label] = {"test_accuracy": float(accuracy), "seconds_with_compile": seconds,
                          "steps": ARGS.accuracy_steps,
                          "mask_rate": history.history.get("mask_rate", [None])[-1]}
    results["labeled"] = len(x_lab)
    results["unlabeled"] = len(unlabeled)
    return results


def device_info():
    info = {"backend": keras.backend.backend(), "keras": keras.__version__,
            "python": platform.python_version(),
            "tensorflow_importable": keras_ssl.data.tensorflow_available()}
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        info.update(jax=jax.__version__, platform=device.platform,
                    device=getattr(device, "device_kind", str(device)),
                    device_count=jax.device_count())
    return info


def main():
    report = {"device": device_info(), "quick": ARGS.quick, "batch": ARGS.batch,
              "ratio": ARGS.ratio, "warmup": ARGS.warmup, "steps": ARGS.steps,
              "throughput": []}
    log("device:", json.dumps(report["device"]))
    if report["device"].get("platform") not in ("gpu", "cuda", "rocm"):
        log("note: no GPU found; the numbers below are CPU numbers")
    modes = [m for m in ARGS.modes.split(",") if m]
    if "tf_data" in modes and not report["device"]["tensorflow_importable"]:
        modes.remove("tf_data")
        log("note: TensorFlow is not importable; skipping mode tf_data")
    log(f"FixMatch step: batch {ARGS.batch} labeled + {ARGS.batch * ARGS.ratio} unlabeled "
        f"(ratio {ARGS.ratio}); {ARGS.warmup} warm-up + {ARGS.steps} timed steps")
    log(f"{'model':10} {'mode':10} {'step/s':>8} {'img/s':>9} {'fit step/s':>10} "
        f"{'fit img/s':>10} {'1st fit s':>9}")
    for name in [m for m in ARGS.models.split(",") if m]:
        for mode in modes:
            r = throughput(name, mode)
            report["throughput"].append(r)
            step = (f"{r['step_steps_per_s']:8.2f} {r['step_images_per_s']:9.0f}"
                    if "step_steps_per_s" in r else f"{'-':>8} {'-':>9}")
            log(f"{name:10} {mode:10} {step} {r['fit_steps_per_s']:10.2f} "
                f"{r['fit_images_per_s']:10.0f} {r['first_fit_s_with_compile']:9.1f}")
    if not ARGS.no_accuracy:
        report["accuracy"] = accuracy_run()
        a = report["accuracy"]
        log(f"accuracy, synthetic stripes, {a['labeled']} labeled / {a['unlabeled']} "
            f"unlabeled, {ARGS.accuracy_steps} steps, small CNN, views on the device:")
        for label in ("supervised", "fixmatch"):
            r = a[label]
            mask = "-" if r["mask_rate"] is None else f"{r['mask_rate']:.3f}"
            log(f"  {label:10} test accuracy {r['test_accuracy']:.3f}  mask rate {mask}  "
                f"{r['seconds_with_compile']:.1f} s (with compilation)")
    if ARGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(ARGS.out)), exist_ok=True)
        with open(ARGS.out, "w") as f:
            json.dump(report, f, indent=2)
        log("wrote", ARGS.out)
    return report


if __name__ == "__main__":
    main()
