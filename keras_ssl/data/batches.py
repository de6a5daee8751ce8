"""Plain batches of images from any supported input (BatchNorm warm-up, predictions)."""

import keras
import numpy as np

from keras_ssl.data.common import describe


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
        f"batches; received {describe(data)}."
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
