"""Checks on plain values: arguments, arrays, first batches, outputs, losses.

Every function here takes plain values (numbers, numpy arrays, specs, the
compiled loss), never the model, and raises `InputError` (or warns, where
training can sensibly go on) with a message that names the argument, shows
what was received and says what to do. `keras_ssl.data` calls them on what it
reads; `SemiSupervisedModel` calls the output checks on one forward pass of
the first labeled batch. The table of cases is docs/bad_inputs.md.

The pixel-range rule (docs/bad_inputs.md, "Pixel range"): a declared
`value_range` is checked against the data; an undeclared one is inferred
only from data that clearly is uint8 (0-255), [0, 1] or [-1, 1]. Anything
else (standardized images, `preprocess_input` output) is refused when the
views need a range (RandAugment, cutout), and trained on when they do not
(flip and translation only).
"""

import math
import re
import warnings

import numpy as np


class InputError(ValueError):
    """Raised by keras-ssl when an input cannot be trained on.

    A `ValueError`, raised before the first training step (and before any
    keras-ssl state of the model changes), with a message that says what was
    received and what to do.
    """


NAMED_RANGES = {(0.0, 255.0): "uint8", (0.0, 1.0): "unit", (-1.0, 1.0): "symmetric"}
# Slack when inferring a range (resizing overshoots [0, 1] a little).
INFER_SLACK = 0.02
# Slack, as a fraction of the span, when checking data against a range.
RANGE_TOLERANCE = 0.05
REGRESSION_LOSSES = ("squared", "absolute", "huber", "logcosh", "cosine", "poisson", "msle",
                     "mse", "mae", "mape")


def is_array(a):
    return isinstance(a, np.ndarray) or (
        hasattr(a, "shape") and hasattr(a, "dtype") and hasattr(a, "__array__")
    )


def numpy(tensor):
    if isinstance(tensor, np.ndarray):
        return tensor
    try:
        return np.asarray(tensor)
    except (TypeError, ValueError):
        import keras

        return keras.ops.convert_to_numpy(tensor)


# ------------------------------------------------------------- the model


def check_wrapped_model(model):
    import keras

    if not isinstance(model, keras.Model):
        hint = ""
        if isinstance(model, keras.layers.Layer):
            hint = " Wrap the layer in a model, e.g. keras.Sequential([layer])."
        elif callable(model):
            hint = " Wrap the function in a keras.layers.Lambda inside a keras.Model."
        raise InputError(
            "SemiSupervisedModel(model=...) must be a keras.Model (Sequential, "
            f"functional or subclassed); received {type(model).__name__}.{hint}"
        )
    for attr, what in (("outputs", "output"), ("inputs", "input")):
        values = getattr(model, attr, None)
        try:
            count = 0 if values is None else len(values)
        except (TypeError, ValueError):
            count = 0
        if count > 1 and what == "output":
            raise InputError(
                f"SemiSupervisedModel(model=...) must have a single output of class "
                f"scores; {model.name!r} has {count} outputs. Wrap a model "
                "that returns one (batch, classes) tensor, e.g. "
                "keras.Model(model.input, model.outputs[0])."
            )
        if count > 1:
            raise InputError(
                f"SemiSupervisedModel(model=...) must take a single image input; "
                f"{model.name!r} has {count} inputs. keras-ssl augments one image "
                "batch per step and has no way to pair side inputs with unlabeled "
                "images. Fold side inputs into the image (extra channels) or train "
                "an image-only model."
            )


def check_unlabeled_ratio(ratio):
    """`unlabeled_ratio` must be an integer >= 1 (2.0 is accepted as 2)."""
    integral = isinstance(ratio, (int, np.integer)) or (
        isinstance(ratio, (float, np.floating))
        and math.isfinite(ratio)
        and float(ratio).is_integer()
    )
    if isinstance(ratio, bool) or not integral or ratio < 1:
        raise InputError(
            f"SemiSupervisedModel(unlabeled_ratio=...) must be an integer >= 1 "
            f"(unlabeled images per labeled image in a batch); received {ratio!r}. "
            "FixMatch uses 7; use 1-3 on a CPU."
        )


def check_compiled(compiled):
    if not compiled:
        raise InputError(
            "The SemiSupervisedModel is not compiled. Call "
            "ssl_model.compile(optimizer='adam') before fit(); with loss=None "
            "keras-ssl picks the cross-entropy matching the model's outputs "
            "(logits or probabilities) and the labels (integers or one-hot)."
        )


def check_ema_decay(decay, name="SemiSupervisedModel(ema_decay=...)"):
    if isinstance(decay, bool) or not isinstance(
        decay, (int, float, np.integer, np.floating)
    ) or not 0.0 <= float(decay) < 1.0:
        raise ValueError(
            f"{name} must be a float in [0, 1); received {decay!r}. Typical values are "
            "0.99 (runs of a few hundred steps) to 0.9999."
        )
    return float(decay)


# ------------------------------------------------------- fit's counts


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_fit_counts(batch_size, epochs, initial_epoch, steps_per_epoch, validation_split,
                     validation_steps=None, validation_freq=1):
    """`fit`'s integer and fraction arguments, before any data is read."""
    if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
        raise InputError(
            f"fit(batch_size=...) must be an integer >= 1 (labeled images per "
            f"step); received {batch_size!r}."
        )
    if not _is_int(epochs) or epochs < 0:
        raise InputError(
            f"fit(epochs=...) must be an integer >= 0; received {epochs!r}."
        )
    if not _is_int(initial_epoch) or initial_epoch < 0:
        raise InputError(
            f"fit(initial_epoch=...) must be an integer >= 0; received {initial_epoch!r}."
        )
    if steps_per_epoch is not None and (not _is_int(steps_per_epoch) or steps_per_epoch < 1):
        raise InputError(
            f"fit(steps_per_epoch=...) must be an integer >= 1 or None; received "
            f"{steps_per_epoch!r}. With few labeled images, len(x) // batch_size "
            "is 0: pass steps_per_epoch=max(1, len(x) // batch_size), or None "
            "for one pass over the labeled data per epoch."
        )
    if validation_steps is not None and (not _is_int(validation_steps)
                                         or validation_steps < 1):
        raise InputError(
            f"fit(validation_steps=...) must be an integer >= 1 or None; received "
            f"{validation_steps!r}."
        )
    if not (_is_int(validation_freq) and validation_freq >= 1):
        raise InputError(
            f"fit(validation_freq=...) must be an integer >= 1; received "
            f"{validation_freq!r}."
        )
    if isinstance(validation_split, bool) or not isinstance(
        validation_split, (int, float, np.integer, np.floating)
    ) or not (0.0 <= float(validation_split) < 1.0):
        raise InputError(
            f"fit(validation_split=...) must be a fraction in [0, 1); received "
            f"{validation_split!r}. E.g. 0.2 holds out the last 20 % of the "
            "labeled arrays."
        )


# ---------------------------------------------------------------- images


def check_images(images, name):
    """Rank 4, numeric, finite."""
    images = numpy(images)
    if images.dtype.kind not in "fiub":
        raise InputError(
            f"{name} must be numeric images; received dtype {images.dtype} "
            f"(shape {images.shape}). Decode files to arrays first, e.g. "
            "keras.utils.image_dataset_from_directory(...) or keras.utils.load_img."
        )
    if images.ndim != 4:
        if images.ndim == 3:
            hint = f"add a channel axis, e.g. x[..., None] -> {images.shape + (1,)}"
        else:
            hint = "reshape flat inputs, e.g. x.reshape(-1, 8, 8, 1)"
        raise InputError(
            f"{name} must be a batch of images of rank 4 (batch, height, width, "
            f"channels); received shape {images.shape}. keras-ssl's augmentations "
            f"need images: {hint}."
        )
    if images.dtype.kind == "f" and not np.all(np.isfinite(images)):
        bad = int(np.size(images) - np.count_nonzero(np.isfinite(images)))
        raise InputError(
            f"{name} contains {bad} NaN or Inf values. Clean or drop those images "
            "before training (e.g. x[np.isfinite(x).all(axis=(1, 2, 3))])."
        )


def check_same_image_shape(shape, expected, name="unlabeled"):
    shape, expected = tuple(shape), tuple(expected)
    if len(shape) != len(expected) or any(
        a is not None and b is not None and a != b for a, b in zip(shape, expected)
    ):
        raise InputError(
            f"{name} images have shape {shape} but labeled images have "
            f"shape {expected}. Resize or crop them to the same (height, width, "
            "channels) before fit()."
        )


class PixelStats:
    """What the range rule needs to know of some images: min, max, dtype."""

    def __init__(self, images, name):
        images = numpy(images)
        self.name = name
        self.uint8 = images.dtype == np.uint8
        self.integer = images.dtype.kind in "iu"
        finite = images if images.dtype.kind != "f" else images[np.isfinite(images)]
        self.empty = finite.size == 0
        self.low = float(finite.min()) if finite.size else 0.0
        self.high = float(finite.max()) if finite.size else 0.0
        self.mean = float(finite.mean()) if finite.size else 0.0

    def __repr__(self):
        return f"[{self.low:g}, {self.high:g}]"


def infer_value_range(stats):
    """The range a `PixelStats` clearly shows, or None if it is none of the three."""
    low, high, slack = stats.low, stats.high, INFER_SLACK
    if stats.uint8:
        return (0.0, 255.0)
    if stats.integer:
        return (0.0, 255.0) if low >= 0 and 1 < high <= 255 else None
    if low >= -slack and high <= 1 + slack:
        return (0.0, 1.0)
    if low >= -1 - slack and high <= 1 + slack:
        return (-1.0, 1.0)
    # 0-255 as floats (e.g. image_dataset_from_directory, resized): a little
    # overshoot from resizing is fine; a mean near 0 is standardized data.
    if low >= -8 and 10 < high <= 263 and stats.mean >= 5:
        return (0.0, 255.0)
    return None


def check_value_range(stats, value_range, previous=None):
    """Data against a declared or inferred range; refuses a range that does not fit."""
    if stats.empty:
        return
    low, high = stats.low, stats.high
    span = value_range[1] - value_range[0]
    tolerance = RANGE_TOLERANCE * span
    if low < value_range[0] - tolerance or high > value_range[1] + tolerance:
        raise InputError(
            f"{stats.name} has values in [{low:g}, {high:g}] but value_range is "
            f"{tuple(value_range)}. Scale the images to the declared range or "
            "declare the range they have: SemiSupervisedModel(..., "
            "value_range=(0, 255)) for uint8, (0, 1) or (-1, 1)."
        )
    named = NAMED_RANGES.get(tuple(float(v) for v in value_range))
    constant = high - low == 0
    looks_unit = not stats.integer and low >= -INFER_SLACK and high <= 1 + INFER_SLACK
    if not constant and named == "uint8" and looks_unit:
        raise InputError(
            f"{stats.name} has values in [{low:g}, {high:g}], which look like "
            "[0, 1] images, but value_range is (0, 255): the strong view would "
            "treat them as nearly black. Pass the images as 0-255 (e.g. x * 255) "
            "or declare value_range='unit'."
        )
    if not constant and named == "symmetric" and looks_unit:
        raise InputError(
            f"{stats.name} has values in [{low:g}, {high:g}], which look like "
            "[0, 1] images, but value_range is (-1, 1). Scale them (x * 2 - 1) or "
            "declare value_range='unit'."
        )


def unknown_range_error(stats):
    return InputError(
        f"Cannot tell the pixel range of {stats.name}: its values are in "
        f"[{stats.low:g}, {stats.high:g}], which is none of uint8 (0-255), [0, 1] "
        "or [-1, 1]. keras-ssl's strong view (RandAugment's brightness, contrast, "
        "solarize..., cutout) works on a known pixel range. Standardized or "
        "preprocess_input-ed images: pass the raw pixels and put the normalization "
        "inside the model (a keras.layers.Normalization or Rescaling layer, or the "
        "backbone's preprocess_input), or declare the range the augmentation "
        "should assume with SemiSupervisedModel(..., value_range=(low, high))."
    )


# ------------------------------------------------------------- labels


def check_label_array(y, count, name="y"):
    """Labels given as an array: length, type, rank, finite."""
    y = numpy(y)
    if y.dtype.kind in "USO":
        example = y.reshape(-1)[0] if y.size else ""
        raise InputError(
            f"The labels ({name}) are strings or objects (e.g. {example!r}); keras-ssl, "
            "like Keras, trains on integer class indices. Encode them, e.g. "
            "class_names, y = np.unique(y, return_inverse=True), and keep "
            "class_names to decode predictions."
        )
    if count is not None and (y.ndim == 0 or len(y) != count):
        received = "a scalar" if y.ndim == 0 else f"{len(y)} labels"
        raise InputError(
            f"x and {name} must have the same number of examples; received {count} "
            f"images and {received}. Pass one label per labeled image, in the same order."
        )
    if y.ndim > 2:
        raise InputError(
            f"The labels ({name}) must have shape (batch,) of class indices or "
            f"(batch, classes) of one-hot or soft labels; received shape {y.shape}."
        )
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise InputError(
            f"{name} contains NaN or Inf labels. Remove those examples "
            "(e.g. keep = np.isfinite(y)) before fit()."
        )


def check_sample_weight(sample_weight, count):
    weights = numpy(sample_weight)
    if weights.dtype.kind not in "fiub":
        raise InputError(
            f"fit(sample_weight=...) must be numeric; received dtype {weights.dtype}."
        )
    if weights.ndim == 0 or len(weights) != count or (
        weights.ndim > 1 and weights.size != count
    ):
        raise InputError(
            f"fit(sample_weight=...) must hold one weight per labeled image "
            f"(shape ({count},)); received shape {weights.shape}."
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise InputError(
            "fit(sample_weight=...) must be finite and >= 0; received values in "
            f"[{np.nanmin(weights):g}, {np.nanmax(weights):g}] or NaN."
        )
    if not np.any(weights > 0):
        raise InputError(
            "fit(sample_weight=...) is 0 for every labeled image: the labeled loss "
            "would be 0. Give the examples positive weights."
        )


def check_class_weight(class_weight, num_classes=None):
    if not isinstance(class_weight, dict) or not class_weight:
        raise InputError(
            "fit(class_weight=...) must be a non-empty dict {class_index: weight}; "
            f"received {type(class_weight).__name__}."
        )
    for key, value in class_weight.items():
        if not _is_int(key) or key < 0 or (num_classes is not None and key >= num_classes):
            limit = f" in [0, {num_classes - 1}]" if num_classes else " >= 0"
            raise InputError(
                f"fit(class_weight=...) keys must be integer class indices{limit}; "
                f"received key {key!r}."
            )
        if isinstance(value, bool) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ) or not math.isfinite(value) or value < 0:
            raise InputError(
                f"fit(class_weight=...) values must be finite numbers >= 0; received "
                f"{value!r} for class {key}."
            )


def check_unlabeled_labels(labels, count):
    labels = np.asarray(labels)
    if count is not None and len(labels) != count:
        raise InputError(
            f"fit(unlabeled_labels=...) has {len(labels)} labels but unlabeled "
            f"has {count} images. Pass one ground-truth class per unlabeled "
            "image, in the same order (or leave unlabeled_labels=None)."
        )
    flat = labels.reshape(len(labels), -1) if labels.ndim else labels
    if labels.ndim > 1 and flat.shape[1] != 1:
        raise InputError(
            f"fit(unlabeled_labels=...) must be integer classes of shape (n,); "
            f"received shape {labels.shape}. For one-hot labels pass "
            "labels.argmax(-1)."
        )
    if labels.dtype.kind not in "iub" and not (
        labels.dtype.kind == "f"
        and np.all(np.isfinite(labels))
        and np.all(labels == np.round(labels))
    ):
        raise InputError(
            "fit(unlabeled_labels=...) must be integer classes; received dtype "
            f"{labels.dtype} with non-integer values."
        )


def warn_small_unlabeled(count, unlabeled_batch):
    if count is not None and unlabeled_batch and 0 < count < unlabeled_batch:
        warnings.warn(
            f"unlabeled has {count} images but each step takes "
            f"{unlabeled_batch} (unlabeled_ratio * batch_size): images repeat "
            "within a batch. Lower unlabeled_ratio or batch_size, or add "
            "unlabeled images.",
            stacklevel=4,
        )


def warn_batch_larger_than_set(batch_size, count):
    if batch_size is not None and batch_size > count:
        warnings.warn(
            f"batch_size={batch_size} is larger than the labeled set ({count} "
            f"images): every batch holds all {count} of them, and the unlabeled "
            f"batch is unlabeled_ratio * {count}. Pass batch_size <= {count} to "
            "silence this.",
            stacklevel=4,
        )


# ------------------------------------------------------ tf.data specs


def check_labeled_spec(spec, name="fit(x=...)"):
    """The element spec of a labeled `tf.data` dataset."""
    import tensorflow as tf

    if isinstance(spec, tf.TensorSpec):
        raise InputError(
            f"{name} is a dataset of images only (element spec {spec}): "
            f"keras-ssl needs labels for {'x' if 'x=' in name else 'validation'}. "
            "Make it yield (images, labels), and pass the images without labels "
            "as unlabeled=."
        )
    if isinstance(spec, dict):
        raise InputError(
            f"{name} yields dicts ({sorted(spec)}); keras-ssl takes (images, labels) "
            "or (images, labels, sample_weights) tuples. Map it, e.g. "
            "dataset.map(lambda d: (d['image'], d['label']))."
        )
    if not (isinstance(spec, tuple) and len(spec) in (2, 3)):
        return
    first, second = spec[0], spec[1]
    if isinstance(first, dict) and len(first) != 1:
        raise InputError(
            f"{name} yields a dict of {len(first)} inputs ({sorted(first)}); "
            "keras-ssl trains models with one image input. Yield "
            "(images, labels)."
        )
    if isinstance(first, tuple) and isinstance(second, (tuple, list, dict)):
        raise InputError(
            "fit(x=...) is a zipped (labeled, unlabeled) dataset whose unlabeled "
            f"part yields {type(second).__name__}s of {len(second)} elements "
            "(e.g. (x, y) pairs). The unlabeled part must yield images only: "
            "zip((labeled, unlabeled.map(lambda x, y: x))); to monitor "
            "pseudo-label accuracy, pass numpy arrays with unlabeled_labels=."
        )
    if isinstance(second, dict):
        raise InputError(
            f"{name} yields labels as a dict ({sorted(second)}); the wrapped model "
            "has one output, so pass the labels as a tensor: "
            "dataset.map(lambda x, y: (x, y['name']))."
        )
    if (
        isinstance(first, tf.TensorSpec)
        and isinstance(second, tf.TensorSpec)
        and len(first.shape) == 4
        and len(second.shape) == 4
    ):
        raise InputError(
            f"{name} is a dataset of (images, images) pairs: if it is "
            "zip((labeled, unlabeled)), its labeled part has no labels. Make the "
            "labeled part yield (images, labels) batches."
        )


def check_unlabeled_not_pair(unlabeled):
    """`unlabeled=(x_unl, y_unl)`, a common slip: unlabeled data has no labels."""
    if not isinstance(unlabeled, (tuple, list)) or len(unlabeled) != 2:
        return
    images, labels = unlabeled
    if is_array(images) and is_array(labels) and np.ndim(images) >= 3 and (
            np.ndim(labels) in (1, 2) and len(labels) == len(images)):
        raise InputError(
            f"fit(unlabeled=...) received a pair of arrays (images of shape "
            f"{tuple(np.shape(images))} and labels of shape {tuple(np.shape(labels))}); "
            "unlabeled data has no labels. Pass unlabeled=x_unlabeled; labels known for "
            "monitoring only go in unlabeled_labels=y_unlabeled (they never reach the loss)."
        )


def check_unlabeled_spec(spec, image_rank, name="unlabeled"):
    import tensorflow as tf

    if isinstance(spec, (tuple, list, dict)):
        raise InputError(
            f"{name} must yield images only, but this dataset yields "
            f"{type(spec).__name__}s of {len(spec)} elements (e.g. (x, y) pairs). "
            "Drop the labels with dataset.map(lambda x, y: x); to monitor "
            "pseudo-label accuracy, pass numpy ground truth as "
            "fit(..., unlabeled_labels=y_unlabeled)."
        )
    if not isinstance(spec, tf.TensorSpec) or len(spec.shape) not in (
        image_rank, image_rank - 1
    ):
        raise InputError(
            f"{name} must yield images of rank {image_rank - 1} (or batches of "
            f"rank {image_rank}), like the labeled images; received element spec "
            f"{spec}. Reshape them to (height, width, channels), e.g. "
            "dataset.map(lambda x: tf.reshape(x, (8, 8, 1)))."
        )


# ------------------------------------------------ outputs, labels, loss


def check_model_input(expected, received):
    """The labeled images' shape against the wrapped model's input shape."""
    if expected is None:
        return
    expected, received = tuple(expected), tuple(received)
    if len(expected) != len(received) or any(
        e is not None and e != r for e, r in zip(expected, received)
    ):
        raise InputError(
            f"The labeled images have shape {received} but the wrapped model takes "
            f"images of shape {expected}. Resize them (image_size= in "
            "image_dataset_from_directory, or a keras.layers.Resizing layer at the "
            "start of the model), or build the model for this shape."
        )


def model_failure(error, shape):
    """An `InputError` for a wrapped model that fails on the first labeled batch."""
    return InputError(
        f"The wrapped model fails on the first labeled images (shape {tuple(shape)}): "
        f"{_first_line(error)}. Check that the model takes images of this shape "
        "and returns (batch, classes) scores."
    )


def check_outputs(outputs, outputs_mode, ends_with_softmax):
    """One forward pass on the first labeled images: shape, NaN, logits or not.

    Returns:
        `(num_classes, looks_like_probabilities)`.
    """
    if isinstance(outputs, (dict, list, tuple)):
        kind = type(outputs).__name__
        names = f" ({sorted(outputs)})" if isinstance(outputs, dict) else ""
        raise InputError(
            f"The wrapped model returns a {kind}{names}, not one tensor of class "
            "scores. Wrap a model that returns one (batch, classes) tensor, e.g. "
            "keras.Model(model.inputs, list(model(model.inputs).values())[0])."
        )
    outputs = numpy(outputs)
    if outputs.ndim != 2 or outputs.shape[-1] < 2:
        raise InputError(
            f"The wrapped model must output class scores of shape (batch, "
            f"classes) with classes >= 2; it outputs shape {outputs.shape}. "
            "keras-ssl trains classifiers: end the model with "
            "keras.layers.Dense(num_classes)."
        )
    if not np.all(np.isfinite(outputs)):
        raise InputError(
            "The wrapped model outputs NaN or Inf on the first labeled batch, "
            "before any training. Check its weights (e.g. loaded from a diverged "
            "run) and its layers; re-initialise it before fit()."
        )
    looks_like_probs = bool(
        np.all(outputs >= 0) and np.allclose(outputs.sum(-1), 1.0, atol=1e-3)
    )
    if outputs_mode == "probabilities" and not looks_like_probs:
        raise InputError(
            "SemiSupervisedModel(outputs='probabilities') but the wrapped model's "
            f"outputs are not probabilities (values in [{outputs.min():g}, "
            f"{outputs.max():g}], rows not summing to 1): it returns logits. Pass "
            "outputs='logits' (or 'auto'), or end the model with a softmax."
        )
    if outputs_mode == "logits" and ends_with_softmax:
        raise InputError(
            "SemiSupervisedModel(outputs='logits') but the wrapped model ends with a "
            "softmax layer: it returns probabilities. Pass outputs='probabilities' "
            "(or 'auto'), or remove the softmax (e.g. classifier_activation=None)."
        )
    return int(outputs.shape[-1]), looks_like_probs


def single_loss(loss):
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        return loss[0]
    if isinstance(loss, dict) and len(loss) == 1:
        return next(iter(loss.values()))
    return loss


def loss_name(loss):
    if isinstance(loss, str):
        name = loss
    elif hasattr(loss, "fn"):  # a Keras LossFunctionWrapper
        name = type(loss).__name__ + getattr(loss.fn, "__name__", "")
    else:
        name = getattr(loss, "__name__", type(loss).__name__)
    return name.lower().replace("_", "")


def loss_from_logits(loss):
    """The loss's `from_logits`, or None where it has no such setting."""
    if loss is None:
        return None
    value = getattr(loss, "from_logits", None)
    if value is None and hasattr(loss, "get_config") and not isinstance(loss, type):
        try:
            value = loss.get_config().get("from_logits")
        except (NotImplementedError, TypeError, AttributeError):
            value = None
    if value is None and "crossentropy" in loss_name(loss):
        return False  # Keras's cross-entropy functions and names default to False
    return value


def _loss_repr(loss):
    return repr(loss) if isinstance(loss, str) else type(loss).__name__


def _suggested_loss(loss):
    name = loss_name(loss)
    if "categorical" in name and "sparse" not in name:
        return "keras.losses.CategoricalCrossentropy(from_logits=True)"
    return "keras.losses.SparseCategoricalCrossentropy(from_logits=True)"


def check_loss(loss, model_from_logits, outputs_mode, looks_like_probs):
    """The compiled loss against the model's outputs (logits or probabilities)."""
    name = loss_name(loss) if loss is not None else ""
    if loss is not None and "crossentropy" not in name and any(
        word == name or word in name for word in REGRESSION_LOSSES
    ):
        raise InputError(
            f"compile(loss={_loss_repr(loss)}) is a regression loss; keras-ssl trains "
            "classifiers, and its pseudo-labels are classes. Compile with loss=None "
            "(keras-ssl picks the cross-entropy), "
            "SparseCategoricalCrossentropy for integer labels or "
            "CategoricalCrossentropy for one-hot labels."
        )
    from_logits_loss = loss_from_logits(loss)
    if not model_from_logits and from_logits_loss:
        raise InputError(
            "The wrapped model ends with a softmax (it outputs probabilities) but "
            "compile(loss=...) has from_logits=True. Compile with "
            "from_logits=False, or remove the final softmax (e.g. "
            "classifier_activation=None) and keep from_logits=True."
        )
    if model_from_logits and looks_like_probs and outputs_mode == "auto":
        raise InputError(
            "The wrapped model's outputs look like probabilities (non-negative, "
            "rows sum to 1) but no final softmax layer was found, so keras-ssl "
            "would treat them as logits. Pass SemiSupervisedModel(..., "
            "outputs='probabilities') (and a loss with from_logits=False), or "
            "return logits from the model."
        )
    if model_from_logits and from_logits_loss is False and not looks_like_probs:
        raise InputError(
            f"The wrapped model outputs logits (no final softmax) but "
            f"compile(loss={_loss_repr(loss)}) expects probabilities "
            f"(from_logits=False). Compile with {_suggested_loss(loss)} (or "
            "loss=None to let keras-ssl pick it), or pass SemiSupervisedModel(..., "
            "outputs='probabilities') if the model does apply a softmax."
        )


def check_labels(y, loss, num_classes, name="y"):
    """Labels (all of them, or a first batch) against the loss and the classes."""
    y = numpy(y)
    check_label_array(y, None, name)
    lname = loss_name(loss) if loss is not None else ""
    sparse_loss = True if "sparsecategorical" in lname else (
        False if "categoricalcrossentropy" in lname else None
    )
    if y.ndim == 2 and y.shape[-1] == 1:
        y = y[:, 0]
    two_d = y.ndim == 2
    label = f"labels ({name})"
    if sparse_loss is True and two_d:
        raise InputError(
            f"The {label} are one-hot or multi-column (shape {y.shape}) but "
            "the loss is sparse categorical cross-entropy, which expects integer "
            "classes of shape (batch,). Pass integer labels (y.argmax(-1)) or "
            "compile with keras.losses.CategoricalCrossentropy()."
        )
    if sparse_loss is False and not two_d:
        raise InputError(
            f"The {label} are integers (shape {y.shape}) but the loss is "
            "categorical cross-entropy, which expects one-hot labels. Compile "
            "with keras.losses.SparseCategoricalCrossentropy() or pass "
            "keras.utils.to_categorical(y, num_classes)."
        )
    if two_d:
        if y.shape[-1] != num_classes:
            raise InputError(
                f"The one-hot {label} have {y.shape[-1]} columns but the "
                f"wrapped model has {num_classes} outputs. Match the model's number "
                "of classes to the labels."
            )
        if y.size and (np.any(y < 0) or not np.allclose(y.sum(-1), 1.0, atol=1e-3)):
            raise InputError(
                f"The one-hot or soft {label} must be non-negative rows that sum to "
                f"1; received values in [{y.min():g}, {y.max():g}] with row sums "
                f"such as {float(y.sum(-1)[0]):g}. For multi-label targets keras-ssl "
                "has no support; for class weights use sample_weight=."
            )
        return
    labels = y.reshape(-1)
    if labels.size == 0:
        return
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise InputError(
            f"The {label} must be integer class indices; received non-integer "
            f"values such as {float(labels[labels != np.round(labels)][0]):g}. Pass "
            "y.astype('int32') of class indices, or one-hot labels with "
            "CategoricalCrossentropy."
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise InputError(
            f"The {label} must be integers in [0, {num_classes - 1}] for a model "
            f"with {num_classes} outputs; received labels in "
            f"[{labels.min():g}, {labels.max():g}]. Check the label encoding or "
            "the model's number of classes."
        )


def _first_line(error):
    """The gist of a framework error: first line, without TF's node names."""
    text = re.sub(r"\{\{[^}]*\}\}", "", str(error))
    text = re.sub(r"\[Op:[^\]]*\].*", "", text)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:300].rstrip(". ")


def check_loss_value(loss, y_sample, outputs):
    """Evaluate the compiled loss once, eagerly, on the first examples."""
    import keras

    if loss is None or isinstance(loss, (list, tuple, dict)):
        return
    outputs = numpy(outputs)
    y_sample = numpy(y_sample)[: len(outputs)]
    try:
        fn = keras.losses.get(loss) if isinstance(loss, str) else loss
        value = fn(keras.ops.convert_to_tensor(y_sample),
                   keras.ops.convert_to_tensor(outputs))
        value = keras.ops.convert_to_numpy(value)
    except Exception as error:  # noqa: BLE001 - any failure is reported alike
        raise InputError(
            f"compile(loss={_loss_repr(loss)}) fails on the first labeled batch "
            f"(labels of shape {y_sample.shape}, model outputs of shape "
            f"{outputs.shape}): {_first_line(error)}. keras-ssl trains "
            "classifiers: use SparseCategoricalCrossentropy with integer labels "
            "or CategoricalCrossentropy with one-hot labels."
        ) from None
    if not np.all(np.isfinite(value)):
        raise InputError(
            f"compile(loss={_loss_repr(loss)}) is NaN or Inf on the first labeled "
            "batch, before any training. Check the labels and that from_logits "
            "matches the model's outputs."
        )
