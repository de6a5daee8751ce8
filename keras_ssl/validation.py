"""Input checks that run before the first training step.

Each check raises `InputError` (or warns, where training can sensibly go on)
with a message that names the argument, shows what was received and says what
to do. Checks on streams (`tf.data`, `PyDataset`) look at their first batch
only. The table of cases is in docs/bad_inputs.md and tests/test_bad_input.py.
"""

import math
import re
import sys
import warnings

import numpy as np


class InputError(ValueError):
    """Raised by keras-ssl when an input cannot be trained on."""


# Unbatched unlabeled streams are peeked at this many images.
PEEK_IMAGES = 64


def _is_array(a):
    return isinstance(a, np.ndarray) or (
        hasattr(a, "shape") and hasattr(a, "dtype") and hasattr(a, "__array__")
    )


def _is_dataset(obj):
    # Without importing TensorFlow: a tf.data.Dataset implies it is loaded.
    module = sys.modules.get("tensorflow")
    data = getattr(module, "data", None)
    return data is not None and isinstance(obj, data.Dataset)


def _is_py_dataset(obj):
    from keras.utils import PyDataset

    return isinstance(obj, PyDataset)


def _numpy(tensor):
    import keras

    if isinstance(tensor, np.ndarray):
        return tensor
    try:
        return np.asarray(tensor)
    except (TypeError, ValueError):
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
    outputs = getattr(model, "outputs", None)
    try:
        several = outputs is not None and len(outputs) > 1
    except (TypeError, ValueError):
        several = False
    if several:
        raise InputError(
            f"SemiSupervisedModel(model=...) must have a single output of class "
            f"scores; {model.name!r} has {len(outputs)} outputs. Wrap a model "
            "that returns one (batch, classes) tensor, e.g. "
            "keras.Model(model.input, model.outputs[0])."
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


def check_compiled(ssl_model):
    if not getattr(ssl_model, "compiled", False):
        raise InputError(
            "The SemiSupervisedModel is not compiled. Call "
            "ssl_model.compile(optimizer='adam') before fit(); with loss=None "
            "keras-ssl picks sparse cross-entropy matching the model's outputs "
            "(logits or probabilities)."
        )


# ---------------------------------------------------------------- images


def check_images(images, name):
    images = _numpy(images)
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


def check_value_range(images, value_range, name):
    images = _numpy(images)
    if images.size == 0 or images.dtype.kind not in "fiu":
        return
    low, high = float(np.min(images)), float(np.max(images))
    span = value_range[1] - value_range[0]
    tolerance = 0.05 * span
    if low < value_range[0] - tolerance or high > value_range[1] + tolerance:
        raise InputError(
            f"{name} has values in [{low:g}, {high:g}] but value_range is "
            f"{tuple(value_range)}. Scale the images to the declared range or "
            "declare the range they have: SemiSupervisedModel(..., "
            "value_range=(0, 255)) for uint8, (0, 1) or (-1, 1)."
        )


def _check_same_image_shape(shape, x_sample, name="unlabeled"):
    expected = tuple(x_sample.shape[1:])
    if any(a is not None and a != b for a, b in zip(shape, expected)) or len(
        shape
    ) != len(expected):
        raise InputError(
            f"{name} images have shape {tuple(shape)} but labeled images have "
            f"shape {expected}. Resize or crop them to the same (height, width, "
            "channels) before fit()."
        )


# ------------------------------------------------------- fit's arguments


def check_fit_arguments(ssl_model, x, y, unlabeled, unlabeled_labels):
    """Checks on `fit`'s arguments themselves, before any data is read."""
    check_compiled(ssl_model)
    if x is None:
        raise InputError(
            "fit() needs labeled images: pass fit(x_labeled, y_labeled, "
            "unlabeled=x_unlabeled)."
        )
    if _is_array(x) and y is None:
        raise InputError(
            "fit() received labeled images x but y=None. keras-ssl needs labels "
            "for x: fit(x_labeled, y_labeled, unlabeled=x_unlabeled). Images "
            "without labels go in unlabeled=."
        )
    if _is_dataset(x):
        if int(x.cardinality()) == 0:
            raise InputError(
                "fit(x=...) is an empty dataset. Pass labeled (images, labels) "
                "batches."
            )
        _check_labeled_dataset_spec(x.element_spec)
    if unlabeled_labels is not None:
        if unlabeled is None:
            raise InputError(
                "fit(unlabeled_labels=...) was given without unlabeled=. Pass the "
                "unlabeled images as unlabeled= (numpy, tf.data or PyDataset) "
                "next to their ground truth; zipped datasets do not support "
                "unlabeled_labels."
            )
        if not _is_array(unlabeled_labels) and not isinstance(
            unlabeled_labels, (list, tuple)
        ):
            raise InputError(
                "fit(unlabeled_labels=...) must be a numpy array of integer "
                f"classes; received {type(unlabeled_labels).__name__}."
            )


def _check_labeled_dataset_spec(spec):
    import tensorflow as tf

    if isinstance(spec, tf.TensorSpec):
        raise InputError(
            f"fit(x=...) is a dataset of images only (element spec {spec}): "
            "keras-ssl needs labels for x. Make it yield (images, labels), and "
            "pass the images without labels as unlabeled=."
        )
    if not (isinstance(spec, tuple) and len(spec) == 2):
        return
    first, second = spec
    if isinstance(first, tuple) and isinstance(second, (tuple, list, dict)):
        raise InputError(
            "fit(x=...) is a zipped (labeled, unlabeled) dataset whose unlabeled "
            f"part yields {type(second).__name__}s of {len(second)} elements "
            "(e.g. (x, y) pairs). The unlabeled part must yield images only: "
            "zip((labeled, unlabeled.map(lambda x, y: x))); to monitor "
            "pseudo-label accuracy, pass numpy arrays with unlabeled_labels=."
        )
    if (
        isinstance(first, tf.TensorSpec)
        and isinstance(second, tf.TensorSpec)
        and len(first.shape) == 4
        and len(second.shape) == 4
    ):
        raise InputError(
            "fit(x=...) is a dataset of (images, images) pairs: if it is "
            "zip((labeled, unlabeled)), its labeled part has no labels. Make the "
            "labeled part yield (images, labels) batches."
        )


def check_labeled_arrays(x, y, batch_size):
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise InputError(
            f"fit(batch_size=...) must be an integer >= 1 (labeled images per "
            f"step); received {batch_size!r}."
        )
    if not _is_array(x):
        return
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        raise InputError(
            "fit(x=...) holds no labeled images. keras-ssl needs at least one "
            "labeled image per class; pass fit(x_labeled, y_labeled, unlabeled=...)."
        )
    check_images(x, "x (labeled images)")
    if y is not None and _is_array(y):
        y = np.asarray(y)
        if len(y) != len(x):
            raise InputError(
                f"x and y must have the same number of examples; received "
                f"{len(x)} images and {len(y)} labels. Pass one label per labeled "
                "image, in the same order."
            )
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise InputError(
                "y contains NaN or Inf labels. Remove those examples "
                "(e.g. keep = np.isfinite(y)) before fit()."
            )
    if batch_size is not None and batch_size > len(x):
        warnings.warn(
            f"batch_size={batch_size} is larger than the labeled set ({len(x)} "
            f"images): every batch holds all {len(x)} of them, and the unlabeled "
            f"batch is unlabeled_ratio * {len(x)}. Pass batch_size <= {len(x)} to "
            "silence this.",
            stacklevel=3,
        )


# ------------------------------------------------------------ unlabeled


def check_unlabeled_spec(spec, image_rank):
    import tensorflow as tf

    if isinstance(spec, (tuple, list, dict)):
        raise InputError(
            "unlabeled must yield images only, but this dataset yields "
            f"{type(spec).__name__}s of {len(spec)} elements (e.g. (x, y) pairs). "
            "Drop the labels with dataset.map(lambda x, y: x); to monitor "
            "pseudo-label accuracy, pass numpy ground truth as "
            "fit(..., unlabeled_labels=y_unlabeled)."
        )
    if not isinstance(spec, tf.TensorSpec) or len(spec.shape) not in (
        image_rank, image_rank - 1
    ):
        raise InputError(
            f"unlabeled must yield images of rank {image_rank - 1} (or batches of "
            f"rank {image_rank}), like the labeled images; received element spec "
            f"{spec}. Reshape them to (height, width, channels), e.g. "
            "dataset.map(lambda x: tf.reshape(x, (8, 8, 1)))."
        )


def _empty_unlabeled():
    return InputError(
        "unlabeled is empty. Pass at least one unlabeled image, or "
        "unlabeled=None for supervised training."
    )


def _peek_dataset(dataset, image_rank):
    """First batch of a dataset of images (batched or not), or None if empty."""
    if len(dataset.element_spec.shape) == image_rank - 1:
        dataset = dataset.batch(PEEK_IMAGES)
    for batch in dataset.take(1):
        return _numpy(batch)
    return None


def _check_unlabeled_batch(batch, x_sample, value_range, name):
    check_images(batch, name)
    _check_same_image_shape(batch.shape[1:], x_sample)
    check_value_range(batch, value_range, name)


def _check_unlabeled_labels(labels, count):
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


def check_unlabeled(unlabeled, x_sample, value_range, labels=None,
                    unlabeled_batch=None):
    """Checks the unlabeled input (its first batch, for streams).

    Args:
        unlabeled: what `fit(unlabeled=...)` received.
        x_sample: the first labeled batch (numpy).
        value_range: the declared or inferred `(low, high)` pixel range.
        labels: `fit(unlabeled_labels=...)`, or None.
        unlabeled_batch: unlabeled images per step, to warn when the set is
            smaller than one batch.
    """
    if _is_dataset(unlabeled):
        import tensorflow as tf

        if unlabeled.cardinality() == 0:
            raise InputError(
                "unlabeled is an empty dataset. Pass at least one unlabeled image, "
                "or unlabeled=None for supervised training."
            )
        spec = unlabeled.element_spec
        check_unlabeled_spec(spec, x_sample.ndim)
        _check_same_image_shape(tuple(spec.shape[-3:]), x_sample)
        batch = _peek_dataset(unlabeled, x_sample.ndim)
        if batch is None or len(batch) == 0:
            raise _empty_unlabeled()
        _check_unlabeled_batch(batch, x_sample, value_range, "unlabeled (first batch)")
        count = int(unlabeled.cardinality())
        if labels is not None:
            batched = len(spec.shape) == x_sample.ndim
            known = count >= 0 and not batched
            if count == tf.data.INFINITE_CARDINALITY:
                raise InputError(
                    "fit(unlabeled_labels=...) cannot be matched to an infinite "
                    "unlabeled dataset (it repeats). Pass the dataset before "
                    ".repeat(), or numpy arrays."
                )
            _check_unlabeled_labels(labels, count if known else None)
        if count >= 0 and len(spec.shape) == x_sample.ndim - 1:
            warn_small_unlabeled(count, unlabeled_batch)
        return
    if _is_py_dataset(unlabeled):
        try:
            length = len(unlabeled)
        except TypeError:
            length = None
        if length == 0:
            raise _empty_unlabeled()
        first = unlabeled[0]
        if isinstance(first, (tuple, list, dict)):
            check_unlabeled_spec(tuple(first) if not isinstance(first, dict) else first,
                                 x_sample.ndim)
        batch = _numpy(first)
        if len(batch) == 0:
            raise _empty_unlabeled()
        _check_unlabeled_batch(batch, x_sample, value_range, "unlabeled (first batch)")
        if labels is not None:
            _check_unlabeled_labels(labels, None)
        return
    if not _is_array(unlabeled) and not isinstance(unlabeled, (list, tuple)):
        raise InputError(
            "unlabeled must be a numpy array of images, a tf.data.Dataset of "
            f"images or a keras.utils.PyDataset; received {type(unlabeled).__name__}."
        )
    images = np.asarray(unlabeled)
    if images.size == 0 or len(images) == 0:
        raise _empty_unlabeled()
    check_images(images, "unlabeled")
    _check_same_image_shape(images.shape[1:], x_sample)
    check_value_range(images, value_range, "unlabeled")
    if labels is not None:
        _check_unlabeled_labels(labels, len(images))
    warn_small_unlabeled(len(images), unlabeled_batch)


def check_zipped_unlabeled(dataset, x_sample, value_range):
    """The unlabeled half of `zip((labeled, unlabeled))`: spec and first batch."""
    check_unlabeled_spec(dataset.element_spec[1], x_sample.ndim)
    for _, batch in dataset.take(1):
        batch = _numpy(batch)
        if batch.ndim == x_sample.ndim - 1:
            batch = batch[None]
        _check_unlabeled_batch(batch, x_sample, value_range, "unlabeled (first batch)")
        return
    raise InputError(
        "fit(x=...) is a zipped (labeled, unlabeled) dataset that yields nothing. "
        "Check that neither part is empty (repeat() the shorter one)."
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


# ------------------------------------------------ outputs, labels, loss


def _single_loss(loss):
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        return loss[0]
    if isinstance(loss, dict) and len(loss) == 1:
        return next(iter(loss.values()))
    return loss


def _loss_name(loss):
    if isinstance(loss, str):
        name = loss
    elif hasattr(loss, "fn"):  # a Keras LossFunctionWrapper
        name = type(loss).__name__ + getattr(loss.fn, "__name__", "")
    else:
        name = getattr(loss, "__name__", type(loss).__name__)
    return name.lower().replace("_", "")


def _loss_from_logits(loss):
    """The loss's `from_logits`, or None where it has no such setting."""
    if loss is None:
        return None
    value = getattr(loss, "from_logits", None)
    if value is None and hasattr(loss, "get_config") and not isinstance(loss, type):
        try:
            value = loss.get_config().get("from_logits")
        except (NotImplementedError, TypeError, AttributeError):
            value = None
    if value is None and "crossentropy" in _loss_name(loss):
        return False  # Keras's cross-entropy functions and names default to False
    return value


def _loss_repr(loss):
    return repr(loss) if isinstance(loss, str) else type(loss).__name__


def check_outputs(ssl_model, x_sample, y_sample, labels=None):
    """Checks that need one forward pass and the compiled loss.

    Args:
        ssl_model: the `SemiSupervisedModel`, built and compiled.
        x_sample, y_sample: the first labeled batch.
        labels: all labels when `fit` received them as an array (so that a
            bad label anywhere is found, not only in the first batch), or None.
    """
    import keras

    n = min(2, len(x_sample))
    outputs = keras.ops.convert_to_numpy(
        ssl_model.model(np.asarray(x_sample[:n], "float32"), training=False)
    )
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
    num_classes = outputs.shape[-1]
    looks_like_probs = bool(
        np.all(outputs >= 0) and np.allclose(outputs.sum(-1), 1.0, atol=1e-3)
    )
    loss = _single_loss(getattr(ssl_model, "loss", None))
    if y_sample is None:
        raise InputError(
            "The labeled data has no labels (it yields images only). Pass "
            "fit(x_labeled, y_labeled, unlabeled=...) or a dataset of "
            "(images, labels) batches."
        )
    y_sample = _numpy(y_sample)
    all_labels = np.asarray(labels) if _is_array(labels) else None
    if all_labels is not None and all_labels.ndim != y_sample.ndim:
        all_labels = None
    _check_labels(y_sample if all_labels is None else all_labels, loss, num_classes)
    from_logits_loss = _loss_from_logits(loss)
    if not ssl_model.from_logits and from_logits_loss:
        raise InputError(
            "The wrapped model ends with a softmax (it outputs probabilities) but "
            "compile(loss=...) has from_logits=True. Compile with "
            "from_logits=False, or remove the final softmax (e.g. "
            "classifier_activation=None) and keep from_logits=True."
        )
    if ssl_model.from_logits and looks_like_probs and ssl_model.outputs == "auto":
        raise InputError(
            "The wrapped model's outputs look like probabilities (non-negative, "
            "rows sum to 1) but no final softmax layer was found, so keras-ssl "
            "would treat them as logits. Pass SemiSupervisedModel(..., "
            "outputs='probabilities') (and a loss with from_logits=False), or "
            "return logits from the model."
        )
    if ssl_model.from_logits and from_logits_loss is False and not looks_like_probs:
        raise InputError(
            f"The wrapped model outputs logits (no final softmax) but "
            f"compile(loss={_loss_repr(loss)}) expects probabilities "
            "(from_logits=False). Compile with "
            "keras.losses.SparseCategoricalCrossentropy(from_logits=True) (or "
            "loss=None to let keras-ssl pick it), or pass SemiSupervisedModel(..., "
            "outputs='probabilities') if the model does apply a softmax."
        )
    _check_loss_value(loss, y_sample[:n], outputs)


def _check_labels(y_sample, loss, num_classes):
    if y_sample.dtype.kind == "f" and not np.all(np.isfinite(y_sample)):
        raise InputError(
            "The labels (y) contain NaN or Inf. Remove those examples before fit()."
        )
    name = _loss_name(loss) if loss is not None else ""
    sparse_loss = True if "sparsecategorical" in name else (
        False if "categoricalcrossentropy" in name else None
    )
    two_d = y_sample.ndim == 2 and y_sample.shape[-1] > 1
    one_hot = two_d and y_sample.shape[-1] == num_classes
    if sparse_loss is True and two_d:
        raise InputError(
            f"The labels are one-hot or multi-column (shape {y_sample.shape}) but "
            "the loss is sparse categorical cross-entropy, which expects integer "
            "classes of shape (batch,). Pass integer labels (y.argmax(-1)) or "
            "compile with keras.losses.CategoricalCrossentropy()."
        )
    if sparse_loss is False and not two_d:
        raise InputError(
            f"The labels are integers (shape {y_sample.shape}) but the loss is "
            "categorical cross-entropy, which expects one-hot labels. Compile "
            "with keras.losses.SparseCategoricalCrossentropy() or pass "
            "keras.utils.to_categorical(y, num_classes)."
        )
    if two_d and not one_hot and sparse_loss is False:
        raise InputError(
            f"The one-hot labels have {y_sample.shape[-1]} columns but the "
            f"wrapped model has {num_classes} outputs. Match the model's number "
            "of classes to the labels."
        )
    if two_d:
        return
    labels = y_sample.reshape(-1)
    if labels.size == 0:
        return
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise InputError(
            "The labels (y) must be integer class indices; received non-integer "
            f"values such as {float(labels[labels != np.round(labels)][0]):g}. Pass "
            "y.astype('int32') of class indices, or one-hot labels with "
            "CategoricalCrossentropy."
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise InputError(
            f"The labels (y) must be integers in [0, {num_classes - 1}] for a model "
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


def _check_loss_value(loss, y_sample, outputs):
    """Evaluate the compiled loss once, eagerly, on the first examples."""
    import keras

    if loss is None or isinstance(loss, (list, tuple, dict)):
        return
    try:
        fn = keras.losses.get(loss) if isinstance(loss, str) else loss
        value = fn(keras.ops.convert_to_tensor(y_sample),
                   keras.ops.convert_to_tensor(outputs))
        value = keras.ops.convert_to_numpy(value)
    except Exception as error:  # noqa: BLE001 - any failure is reported alike
        first_line = _first_line(error)
        raise InputError(
            f"compile(loss={_loss_repr(loss)}) fails on the first labeled batch "
            f"(labels of shape {y_sample.shape}, model outputs of shape "
            f"{outputs.shape}): {first_line}. keras-ssl trains "
            "classifiers: use SparseCategoricalCrossentropy with integer labels "
            "or CategoricalCrossentropy with one-hot labels."
        ) from None
    if not np.all(np.isfinite(value)):
        raise InputError(
            f"compile(loss={_loss_repr(loss)}) is NaN or Inf on the first labeled "
            "batch, before any training. Check the labels and that from_logits "
            "matches the model's outputs."
        )
