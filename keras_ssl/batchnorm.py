"""Exact BatchNorm statistics: `recompute_batchnorm_statistics` and what it needs.

The callback that calls it at the right moments is
`keras_ssl.callbacks.BatchNormWarmup`; the batches come from
`keras_ssl.data.iterate_batches`.
"""

import contextlib
import warnings

import keras
import numpy as np
from keras import ops

from keras_ssl import _compat
from keras_ssl.data import describe, iterate_batches


def batchnorm_layers(model):
    """Every `keras.layers.BatchNormalization` in `model`, nested models included.

    Layers with `trainable=False` are left out: Keras runs them in inference
    mode and never updates their statistics (the fine-tuning convention), so
    keras-ssl does not touch them either.
    """
    found = []
    for layer in _compat.flatten_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            found.append(layer)
    return found


def recompute_batchnorm_statistics(model, data, steps=None, batch_size=32, seed=0):
    """Recompute every BatchNorm layer's moving mean and variance exactly.

    With Keras's default momentum (0.99) the moving statistics lag far behind
    the weights in a short run: they still remember the first steps (what
    that costs is measured in docs/callbacks.md). This function replaces them
    by the statistics of the current weights.

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
                f"received {describe(data)}. Pass at least `batch_size` images."
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
