"""Weak and strong views of images, built from Keras-core layers.

FixMatch needs two views of every unlabeled image: a weak one (flip and
translation) whose prediction becomes the pseudo-label, and a strong one
(weak + RandAugment + cutout) that is trained to match it. Everything here is
a Keras preprocessing layer, so it runs inside a `tf.data` pipeline on every
backend (the default, `attach_views`) or inside the training step on an
accelerator.

Geometric layers (flip, translation, rotation, zoom, crop) work on any pixel
range; photometric ones (RandAugment, cutout's fill) need to know it:
`needs_value_range` tells which a view is.
"""

import keras
from keras import layers

from keras_ssl import _compat

# Layers whose result does not depend on the pixel range.
RANGE_FREE_LAYERS = (
    layers.RandomFlip, layers.RandomTranslation, layers.RandomRotation,
    layers.RandomZoom, layers.RandomCrop, layers.Resizing, layers.CenterCrop,
    layers.Identity,
)
LABELED = "labeled"
UNLABELED = "unlabeled"
UNLABELED_LABELS = "unlabeled_labels"
# Position of each unlabeled image in the unlabeled array, and its row of the
# model's pseudo-label table (algorithms with `uses_table`).
UNLABELED_INDEX = "unlabeled_index"
UNLABELED_TARGETS = "unlabeled_targets"
VALUE_RANGES = {"uint8": (0, 255), "unit": (0, 1), "symmetric": (-1, 1)}
# Views compute in float32 whatever the global dtype policy: under
# mixed_float16, Keras's RandomErasing fails in float16 and 0-255 pixels would
# lose precision. The model casts the views to its own compute dtype.
DTYPE = "float32"


def resolve_value_range(value_range):
    """Turn `"uint8"`, `"unit"`, `"symmetric"` or a `(low, high)` pair into a tuple."""
    if isinstance(value_range, str):
        if value_range not in VALUE_RANGES:
            raise ValueError(
                f"Unknown value_range={value_range!r}. Expected one of "
                f"{sorted(VALUE_RANGES)} or a (low, high) tuple such as (0, 255)."
            )
        return VALUE_RANGES[value_range]
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"value_range must be a (low, high) pair or one of "
            f"{sorted(VALUE_RANGES)}; received {value_range!r}."
        ) from None
    if not low < high:
        raise ValueError(f"value_range must have low < high; received {value_range!r}.")
    return (low, high)


class _Equalization(layers.Equalization):
    """`keras.layers.Equalization` whose histogram is one `bincount` whenever
    the layer computes with TensorFlow (a `tf.data` map).

    Keras chooses its histogram by the global backend: under JAX it unrolls a
    256-step loop (`bincount` cannot be jitted there), and it does so even in
    a `tf.data` map, where the layer computes with TensorFlow. The strong
    view's map then traced about 25,000 operations instead of about 3,000:
    about 20 s more at the start of every `fit` under JAX on a 2-core CPU.
    """

    def _custom_histogram_fixed_width(self, values, value_range, nbins):
        if self.backend.name != "tensorflow":
            return super()._custom_histogram_fixed_width(values, value_range, nbins)
        # Keras's own non-JAX branch, through the layer's (TensorFlow) backend.
        ops = self.backend
        low, high = (ops.cast(v, "float32") for v in value_range)
        scaled = (ops.cast(values, "float32") - low) * (nbins - 1) / (high - low)
        indices = ops.numpy.clip(ops.cast(scaled, "int32"), 0, nbins - 1)
        return ops.numpy.bincount(ops.numpy.reshape(indices, [-1]), minlength=nbins)


@keras.saving.register_keras_serializable(package="keras_ssl")
class PerImageRandAugment(layers.RandAugment):
    """RandAugment that draws its operations independently for every image.

    `keras.layers.RandAugment` picks one pair of operations for a whole batch;
    FixMatch's strong view wants a different pair per image. This subclass
    keeps Keras's operations and magnitudes and only changes the choice: each
    image gets its own `num_ops` operation indices. On TensorFlow (in a
    `tf.data` map, where keras-ssl makes its views by default) each operation
    is computed only on the images that chose it, about 4x cheaper than the
    parent; on JAX and PyTorch (augmentation inside a jitted step) every
    operation runs on the whole batch and `where` keeps the chosen one, as in
    the parent.

    Example:

    ```python
    aug = keras_ssl.augment.PerImageRandAugment(value_range=(0, 255))
    strong = aug(images, training=True)  # images: (batch, h, w, c)
    ```

    Args:
        value_range: range of the input pixel values, e.g. `(0, 255)`.
        num_ops: operations applied in sequence to each image. Default 2.
        factor: magnitude bound passed to the Keras operations. Default 0.5;
            each operation samples its own magnitude per image below it.
        interpolation: `"bilinear"` or `"nearest"`.
        seed: optional integer seed.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.equalization = _Equalization(value_range=self.value_range,
                                          data_format=self.data_format,
                                          dtype=self.dtype_policy)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        if not self._sparse():
            transformation = super().get_random_transformation(data, training, seed)
        else:
            # TensorFlow (a tf.data map or a TF step, never XLA): only the
            # chosen operations are computed, so the parameters are drawn per
            # operation on the images that chose it, in `transform_images`.
            for name in self._AUGMENT_LAYERS:
                getattr(self, name).backend.set_backend("tensorflow")
            transformation = {}
        images = data["images"] if isinstance(data, dict) else data
        shape = self.backend.shape(images)
        batch = shape[0] if len(shape) == 4 else 1
        transformation["layer_idxes"] = self.backend.random.randint(
            (self.num_ops, batch),
            0,
            len(self._AUGMENT_LAYERS),
            seed=_compat.seed_generator(self),
        )
        return transformation

    def _sparse(self):
        # Dynamic shapes (gather the images that chose an operation) are
        # fine in TensorFlow graphs and eager code, but not under jax.jit or
        # XLA; keras_ssl never runs these layers under TF's XLA.
        return _compat.in_tf_graph() or keras.backend.backend() == "tensorflow"

    def transform_images(self, images, transformation, training=True):
        if not training:
            return self.backend.cast(images, self.compute_dtype)
        images = self.backend.cast(images, self.compute_dtype)
        unbatched = len(images.shape) == 3
        if unbatched:
            images = self.backend.numpy.expand_dims(images, 0)
        idxes = transformation["layer_idxes"]
        if "transforms" not in transformation:
            images = self._transform_chosen(images, idxes)
        else:
            # Every operation on every image, then keep the chosen one: the
            # static-shape form that jax.jit and torch can run on a device.
            transforms = transformation["transforms"]
            for i in range(self.num_ops):
                choice = self.backend.numpy.reshape(idxes[i], (-1, 1, 1, 1))
                for idx, (key, value) in enumerate(transforms.items()):
                    layer = getattr(self, key)
                    images = self.backend.numpy.where(
                        choice == idx, layer.transform_images(images, value), images
                    )
        if unbatched:
            images = images[0]
        return self.backend.cast(images, self.compute_dtype)

    def _transform_chosen(self, images, idxes):
        """TensorFlow only: apply each operation to the images that chose it."""
        import tensorflow as tf

        for i in range(self.num_ops):
            for idx, name in enumerate(self._AUGMENT_LAYERS):
                layer = getattr(self, name)
                where = tf.where(tf.equal(idxes[i], idx))

                def apply(images=images, where=where, layer=layer):
                    chosen = tf.gather_nd(images, where)
                    value = layer.get_random_transformation(
                        chosen, training=True,
                        seed=_compat.seed_generator(self),
                    )
                    out = tf.cast(layer.transform_images(chosen, value), images.dtype)
                    return tf.tensor_scatter_nd_update(images, where, out)

                images = tf.cond(
                    tf.shape(where)[0] > 0, apply, lambda images=images: images
                )
        return images


def weak_augmentation(value_range=(0, 255), flip=True, translate=0.125, seed=None):
    """The weak view: horizontal flip and translation up to `translate`.

    Args:
        value_range: range of the pixel values (kept unchanged).
        flip: add a random horizontal flip (turn off for digits or text).
        translate: largest shift as a fraction of height and width; padding
            reflects the image, as in FixMatch.
        seed: optional integer seed.

    Returns:
        A `keras.layers.Pipeline` of preprocessing layers (tf.data-safe).
    """
    del value_range  # Geometric operations do not depend on the range.
    ops = []
    if flip:
        ops.append(layers.RandomFlip("horizontal", seed=seed, dtype=DTYPE))
    if translate:
        ops.append(
            layers.RandomTranslation(
                translate, translate, fill_mode="reflect", seed=seed, dtype=DTYPE
            )
        )
    return layers.Pipeline(ops, name="weak_view")


def strong_augmentation(
    value_range=(0, 255), flip=True, translate=0.125, num_ops=2, magnitude=0.5,
    cutout=0.5, seed=None,
):
    """The strong view: weak + per-image RandAugment + cutout.

    Args:
        value_range: range of the pixel values.
        flip, translate: as in `weak_augmentation`.
        num_ops: RandAugment operations per image.
        magnitude: RandAugment's upper magnitude; each image samples below it.
        cutout: side of the erased square as a fraction of the image side
            (0.5 erases a square of half the side, as FixMatch). 0 disables it.
        seed: optional integer seed.

    Returns:
        A `keras.layers.Pipeline` of preprocessing layers (tf.data-safe).
    """
    value_range = resolve_value_range(value_range)
    ops = list(weak_augmentation(value_range, flip, translate, seed).layers)
    ops.append(
        PerImageRandAugment(
            value_range=value_range, num_ops=num_ops, factor=magnitude, seed=seed,
            dtype=DTYPE,
        )
    )
    if cutout:
        area = float(cutout) ** 2
        ops.append(
            layers.RandomErasing(
                factor=(1.0, 1.0),
                scale=(area, area),
                fill_value=(value_range[0] + value_range[1]) / 2.0,
                value_range=value_range,
                seed=seed,
                dtype=DTYPE,
            )
        )
    return layers.Pipeline(ops, name="strong_view")


def needs_value_range(view):
    """Whether a view's result depends on the pixel range of its input.

    A Keras layer (or a `Pipeline` / `Sequential` of layers) needs it unless
    every layer is geometric (`RANGE_FREE_LAYERS`). A plain callable is
    taken as range-free: its author knows the range it expects.
    """
    sublayers = getattr(view, "layers", None)
    if isinstance(view, (layers.Pipeline, keras.Sequential)) and sublayers is not None:
        return any(needs_value_range(layer) for layer in sublayers)
    if isinstance(view, keras.layers.Layer):
        return not isinstance(view, RANGE_FREE_LAYERS)
    return False


def _as_float(images):
    import tensorflow as tf

    return tf.cast(images, "float32")


def split_element(element):
    """`(x, rest)` of a dataset element `x` or `(x, y[, sample_weight])`."""
    if isinstance(element, (tuple, list)):
        return element[0], tuple(element[1:])
    return element, ()


def attach_views(dataset, views, labeled_view=None, zipped=True, on_device=False):
    """Map every augmented view over a (zipped) `tf.data` source, in parallel.

    Args:
        dataset: `zip((labeled, unlabeled))` when `zipped`, where labeled
            batches are `x` or `(x, y[, sample_weight])` and unlabeled batches
            are images (or `(images, labels)` for monitoring); else a labeled
            dataset alone (supervised training).
        views: dict `{name: callable}` producing each unlabeled view.
        labeled_view: callable applied to labeled images, or None.
        zipped: whether `dataset` carries an unlabeled stream.
        on_device: make no view here: yield the raw float32 batches as
            `{"labeled": x, "unlabeled": u}`; the training step augments them.

    Returns:
        A dataset of `({"labeled": x, view: ..., ...}, y[, sample_weight])`.
    """
    import tensorflow as tf

    if on_device:
        views, labeled_view = {UNLABELED: _as_float}, None

    def augment_labeled(x):
        x = _as_float(x)
        return labeled_view(x, training=True) if labeled_view is not None else x

    if not zipped:

        def combine(*element):
            x, rest = split_element(element if len(element) > 1 else element[0])
            return ({LABELED: augment_labeled(x)},) + rest

    else:

        def combine(lab, unl):
            x, rest = split_element(lab)
            inputs = {LABELED: augment_labeled(x)}
            if isinstance(unl, dict):
                if "labels" in unl:
                    inputs[UNLABELED_LABELS] = unl["labels"]
                if "index" in unl:
                    inputs[UNLABELED_INDEX] = unl["index"]
                if "targets" in unl:
                    inputs[UNLABELED_TARGETS] = unl["targets"]
                unl = unl["images"]
            elif isinstance(unl, (tuple, list)):
                unl, inputs[UNLABELED_LABELS] = unl
            unl = _as_float(unl)
            for name, view in views.items():
                inputs[name] = view(unl) if on_device else view(unl, training=True)
            return (inputs,) + rest

    autotune = tf.data.AUTOTUNE
    return dataset.map(combine, num_parallel_calls=autotune).prefetch(autotune)
