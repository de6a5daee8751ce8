"""Exact BatchNorm statistics: `recompute_batchnorm_statistics` and its callback."""

import contextlib
import warnings

import keras
import numpy as np
from keras import ops

from keras_ssl.callbacks import _state


def batchnorm_layers(model):
    """Every `keras.layers.BatchNormalization` in `model`, nested models included.

    Layers with `trainable=False` are left out: Keras runs them in inference
    mode and never updates their statistics (the fine-tuning convention), so
    keras-ssl does not touch them either.
    """
    found = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            found.append(layer)
    return found


def recompute_batchnorm_statistics(model, data, steps=None, batch_size=32, seed=0):
    """Recompute every BatchNorm layer's moving mean and variance exactly.

    With Keras's default momentum (0.99) the moving statistics lag far behind
    the weights in a short run: they still remember the first steps. Digits
    with 50 labels, 300 steps: 0.41 test accuracy with the moving statistics,
    0.94 with the test batch's own statistics. This function replaces them by
    the statistics of the current weights.

    What it computes: `data` is run forward in batches, with every BatchNorm
    layer normalizing by its batch's statistics (as in training) and every
    other layer in inference mode (no dropout, no random augmentation). For
    each BatchNorm layer the new moving mean is the average of the per-batch
    means and the new moving variance is the average of the per-batch
    (biased) variances, each batch weighted by its size (with equal batch
    sizes, the cumulative average `torch.optim.swa_utils.update_bn`
    computes). It is not the variance of the whole set, which would add the
    spread of the batch means: the per-batch variance is the normalization
    the next layers saw in training. No other weight
    changes: kernels, gamma/beta, optimizer state and the layers' momentum are
    as before. Frozen layers (`trainable=False`) are skipped.

    Works on every backend (eager forward passes), for Sequential, functional
    and subclassed models and models nested in them (e.g.
    `keras.applications.MobileNet` inside a Sequential), and for a
    `keras_ssl.SemiSupervisedModel` (its wrapped model's layers).

    Example:

    ```python
    model.fit(x_labeled, y_labeled, epochs=5)
    keras_ssl.callbacks.recompute_batchnorm_statistics(model, x_train, steps=50)
    model.evaluate(x_test, y_test)
    ```

    Args:
        model: a Keras model (or layer) containing BatchNormalization layers.
        data: images like those the model will be evaluated on (not
            augmented): a numpy array, an `(x, y)` tuple of arrays (the labels
            are ignored), a batched `tf.data.Dataset` of `x` or `(x, y, ...)`,
            a `keras.utils.PyDataset`, or any iterable of batches.
        steps: number of batches. None: one pass over `data` (arrays:
            `len(data) // batch_size` full batches; the remainder is dropped
            unless it is the only batch). Arrays are cycled (reshuffled) when
            `steps` asks for more.
        batch_size: batch size for array data. Default 32.
        seed: seed of the shuffle of array data. Default 0 (deterministic).

    Returns:
        The list of BatchNormalization layers whose statistics were replaced.
    """
    if steps is not None and (isinstance(steps, bool) or int(steps) < 1):
        raise ValueError(
            f"recompute_batchnorm_statistics(steps=...) must be None (one pass "
            f"over `data`) or an integer >= 1; received {steps!r}."
        )
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(
            f"recompute_batchnorm_statistics(batch_size=...) must be an integer "
            f">= 1; received {batch_size!r}."
        )
    layers = batchnorm_layers(model)
    if not layers:
        return []
    recorder = _Recorder(layers)
    with recorder, _no_grad():
        seen = 0
        for x in iterate_batches(data, steps, int(batch_size), seed):
            model(x, training=False)
            seen += 1
        if seen == 0:
            raise ValueError(
                "recompute_batchnorm_statistics(data=...) yielded no batch; "
                f"received {_describe(data)}. Pass at least `batch_size` images."
            )
        recorder.commit()
    unused = [layer.name for layer in layers if recorder.count[id(layer)] == 0]
    if unused:
        warnings.warn(
            f"BatchNorm layers {unused} were not called by the forward pass; "
            "their statistics are unchanged.",
            stacklevel=2,
        )
    return [layer for layer in layers if recorder.count[id(layer)] > 0]


class _Recorder:
    """Patches BatchNorm layers to record their batch statistics, then undoes it.

    While active, each layer's `call` runs Keras's own training-mode code
    with `momentum=0`, so that right after a call its moving statistics hold
    that batch's mean and variance; they are read and accumulated in float64.
    On exit every variable of every layer is put back as it was, unless
    `commit()` wrote the averages first.
    """

    def __init__(self, layers):
        self.layers = layers
        self.count = {id(layer): 0 for layer in layers}
        self.sums = {}
        self.saved = {}
        self.momentum = {}

    def __enter__(self):
        for layer in self.layers:
            self.saved[id(layer)] = [ops.convert_to_numpy(v) for v in layer.variables]
            self.momentum[id(layer)] = layer.momentum
            # Finite start values: with momentum 0 each call overwrites them.
            mean, var = layer.moving_mean, layer.moving_variance
            layer.moving_mean.assign(np.zeros(mean.shape, mean.dtype))
            layer.moving_variance.assign(np.ones(var.shape, var.dtype))
            layer.momentum = 0.0
            layer.call = self._patched(layer, layer.call)
        return self

    def _patched(self, layer, original):
        def call(inputs, *args, **kwargs):
            kwargs["training"] = True
            outputs = original(inputs, *args, **kwargs)
            weight = float(ops.shape(inputs)[0])
            mean = np.asarray(ops.convert_to_numpy(layer.moving_mean), np.float64)
            var = np.asarray(ops.convert_to_numpy(layer.moving_variance), np.float64)
            key = id(layer)
            if self.count[key] == 0:
                self.sums[key] = [0.0, np.zeros_like(mean), np.zeros_like(var)]
            total = self.sums[key]
            total[0] += weight
            total[1] += weight * mean
            total[2] += weight * var
            self.count[key] += 1
            return outputs

        return call

    def commit(self):
        for layer in self.layers:
            key = id(layer)
            if self.count[key] == 0:
                continue
            weight, mean_sum, var_sum = self.sums[key]
            self._restore(layer)
            mean, var = mean_sum / weight, var_sum / weight
            layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
            layer.moving_variance.assign(var.astype(layer.moving_variance.dtype))
            if getattr(layer, "renorm", False):
                stddev = np.sqrt(var + layer.epsilon)
                layer.moving_stddev.assign(stddev.astype(layer.moving_stddev.dtype))
            self.saved.pop(key)

    def _restore(self, layer):
        for variable, value in zip(layer.variables, self.saved[id(layer)]):
            variable.assign(value)

    def __exit__(self, *exc):
        for layer in self.layers:
            if "call" in layer.__dict__:
                del layer.call
            layer.momentum = self.momentum[id(layer)]
            if id(layer) in self.saved:
                self._restore(layer)
        return False


@contextlib.contextmanager
def _no_grad():
    if keras.backend.backend() == "torch":
        import torch

        with torch.no_grad():
            yield
    else:
        yield


def _describe(data):
    shape = getattr(data, "shape", None)
    if shape is not None:
        return f"{type(data).__name__} of shape {tuple(shape)}"
    return type(data).__name__


def _first(element):
    if isinstance(element, (tuple, list)):
        return element[0]
    return element


def _as_input(x):
    if isinstance(x, dict):
        return {k: _as_input(v) for k, v in x.items()}
    x = np.asarray(x)  # numpy, tf.Tensor, jax.Array, CPU torch.Tensor
    if np.issubdtype(x.dtype, np.floating) and x.dtype != np.float32:
        x = x.astype(np.float32)
    return x


def _is_array(x):
    return isinstance(x, np.ndarray) or (
        hasattr(x, "shape") and hasattr(x, "__array__") and not _is_dataset(x)
    )


def _is_dataset(x):
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover - tensorflow is a dependency
        return False
    return isinstance(x, tf.data.Dataset)


def iterate_batches(data, steps, batch_size, seed=0):
    """Yield up to `steps` input batches (numpy) from any supported `data`."""
    if isinstance(data, tuple) and data and (_is_array(data[0]) or isinstance(data[0], dict)):
        data = data[0]
    if isinstance(data, dict) or _is_array(data):
        yield from _array_batches(data, steps, batch_size, seed)
        return
    if _is_dataset(data):
        cardinality = int(data.cardinality())
        if steps is None and cardinality < 0 and cardinality != -2:  # infinite
            raise ValueError(
                "BatchNorm warm-up received an infinite tf.data.Dataset as `data` "
                "and steps=None; pass steps=N (e.g. steps=50)."
            )
        dataset = data if steps is None else data.repeat().take(int(steps))
        for element in dataset:
            yield _as_input(_first(element))
        return
    if isinstance(data, keras.utils.PyDataset):
        n = len(data)
        total = n if steps is None else int(steps)
        for i in range(total):
            yield _as_input(_first(data[i % n]))
        return
    if hasattr(data, "__iter__") and not isinstance(data, (str, bytes)):
        for i, element in enumerate(data):
            if steps is not None and i >= int(steps):
                break
            yield _as_input(_first(element))
        return
    raise TypeError(
        "BatchNorm warm-up `data` must be images: a numpy array, an (x, y) tuple, "
        f"a batched tf.data.Dataset, a keras.utils.PyDataset or an iterable of "
        f"batches; received {_describe(data)}."
    )


def _array_batches(data, steps, batch_size, seed):
    arrays = data if isinstance(data, dict) else {None: data}
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    n = len(next(iter(arrays.values())))
    if n == 0:
        return
    size = min(batch_size, n)
    per_pass = max(n // size, 1)
    total = per_pass if steps is None else int(steps)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    position = 0
    for _ in range(total):
        if position + size > n:
            order, position = rng.permutation(n), 0
        index = np.sort(order[position:position + size])
        position += size
        batch = {k: _as_input(v[index]) for k, v in arrays.items()}
        yield batch.get(None, batch)


class BatchNormWarmup(keras.callbacks.Callback):
    """Recomputes BatchNorm statistics exactly at the moments that matter.

    A short run (a few hundred steps on a small labeled set, typical of SSL)
    leaves BatchNorm's moving mean and variance lagging behind the weights
    with Keras's default momentum 0.99: they still average the first steps.
    Measured on digits, 50 labels, 300 steps: 0.41 test accuracy with the
    moving statistics against 0.94 with exact ones. This callback calls
    `keras_ssl.callbacks.recompute_batchnorm_statistics` (see there for what
    "exact" means: a cumulative average of per-batch means and variances
    over `steps` batches of `data`, with no other weight changed):

    - when training begins (after the weights are restored by
      `BackupAndRestore`, whatever the order of the callbacks);
    - at each phase switch: when the model's `unlabeled_loss_scale` changes
      between epochs, as `PlateauPhaseSwitch` does;
    - optionally before each validation (`before_validation=True`), after
      the other callbacks' `on_test_begin`: with `EMATeacher`, the
      statistics are recomputed for the EMA weights it swapped in.

    Recomputed statistics stay in the model (they are only used outside
    training, where they are better than the lagging ones). Works on
    TensorFlow, JAX and PyTorch; the forward passes are eager, so keep
    `steps` modest (tens of batches).

    Example:

    ```python
    warmup = keras_ssl.callbacks.BatchNormWarmup(x_unlabeled, steps=50,
                                                 before_validation=True)
    model.fit(x, y, validation_data=(x_val, y_val), epochs=10,
              callbacks=[warmup])
    ```

    Args:
        data: images like those evaluated on, not augmented (labeled and/or
            unlabeled training images): anything
            `recompute_batchnorm_statistics` takes.
        steps: batches per recomputation. None: one pass over `data`.
        batch_size: batch size for array data. Default 32.
        at_train_begin: recompute when training begins. Default True.
        at_phase_switch: recompute when `unlabeled_loss_scale` changed since
            the previous epoch. Default True.
        before_validation: recompute before each validation. Default False.
        seed: shuffle seed for array data. Default 0.
        verbose: 1 prints a line at each recomputation. Default 0.
    """

    def __init__(self, data, steps=None, batch_size=32, at_train_begin=True,
                 at_phase_switch=True, before_validation=False, seed=0, verbose=0):
        super().__init__()
        if data is None:
            raise ValueError(
                "BatchNormWarmup(data=...) needs images to run forward, e.g. the "
                "unlabeled images; received None."
            )
        if steps is not None and (isinstance(steps, bool) or int(steps) < 1):
            raise ValueError(
                f"BatchNormWarmup(steps=...) must be None (one pass over `data`) "
                f"or an integer >= 1; received {steps!r}."
            )
        self.data = data
        self.steps = steps
        self.batch_size = int(batch_size)
        self.at_train_begin = bool(at_train_begin)
        self.at_phase_switch = bool(at_phase_switch)
        self.before_validation = bool(before_validation)
        self.seed = seed
        self.verbose = verbose
        self.recomputations = []  # (when, epoch) of each recomputation
        self._pending = None
        self._last_scale = None
        self._epoch = None
        self._validating = False

    def recompute(self, reason="manual"):
        """Recompute now (variables must be in sync: epoch boundaries are)."""
        layers = recompute_batchnorm_statistics(
            self.model, self.data, self.steps, self.batch_size, self.seed
        )
        self.recomputations.append((reason, self._epoch))
        if self.verbose:
            _state.print_msg(
                f"BatchNormWarmup: recomputed {len(layers)} BatchNorm layers ({reason})."
            )
        return layers

    def on_train_begin(self, logs=None):
        self._last_scale = None
        self._epoch = None
        # Deferred to the first epoch so that BackupAndRestore's
        # on_train_begin has restored the weights, whatever the order.
        self._pending = "train begin" if self.at_train_begin else None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        scale = _state.unlabeled_loss_scale(self.model)
        reason = self._pending
        if (self.at_phase_switch and scale is not None and self._last_scale is not None
                and scale != self._last_scale):
            reason = "phase switch"
        self._last_scale = scale
        self._pending = None
        if reason:
            self.recompute(reason)

    def on_test_begin(self, logs=None):
        self._validating = self.before_validation

    def on_test_batch_begin(self, batch, logs=None):
        # The first test batch comes after every callback's on_test_begin
        # (EMATeacher's swap) and, on JAX, before the state is gathered.
        if self._validating:
            self._validating = False
            self.recompute("before validation")
