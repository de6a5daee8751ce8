"""Input checks that run before the first training step.

Each check raises (or warns, where training can sensibly go on) with a
message that names the argument, shows what was received and says what to do.
The table of cases is in docs/bad_inputs.md and tests/test_bad_input.py.
"""

import warnings

import numpy as np


class InputError(ValueError):
    """Raised by keras-ssl when an input cannot be trained on."""


def _is_array(a):
    return isinstance(a, np.ndarray) or (
        hasattr(a, "shape") and hasattr(a, "dtype") and hasattr(a, "__array__")
    )


def check_wrapped_model(model):
    import keras

    if not isinstance(model, keras.Model):
        raise InputError(
            "SemiSupervisedModel(model=...) must be a keras.Model (Sequential, "
            f"functional or subclassed); received {type(model).__name__}."
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
    if isinstance(ratio, bool) or not isinstance(ratio, (int, np.integer)) or ratio < 1:
        raise InputError(
            f"unlabeled_ratio must be an integer >= 1 (unlabeled images per "
            f"labeled image in a batch); received {ratio!r}. FixMatch uses 7; "
            "use 1-3 on a CPU."
        )


def check_images(images, name):
    images = np.asarray(images)
    if images.ndim != 4:
        raise InputError(
            f"{name} must be a batch of images of rank 4 (batch, height, width, "
            f"channels); received shape {images.shape}. keras-ssl's augmentations "
            "need images: reshape flat inputs, e.g. x.reshape(-1, 8, 8, 1)."
        )
    if images.dtype.kind == "f" and not np.all(np.isfinite(images)):
        bad = int(np.size(images) - np.count_nonzero(np.isfinite(images)))
        raise InputError(
            f"{name} contains {bad} NaN or Inf values. Clean or drop those images "
            "before training (e.g. x[np.isfinite(x).all(axis=(1, 2, 3))])."
        )


def check_value_range(images, value_range, name):
    images = np.asarray(images)
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


def check_labeled_arrays(x, y, batch_size):
    if not _is_array(x):
        return
    x = np.asarray(x)
    check_images(x, "x (labeled images)")
    if y is not None and _is_array(y):
        y = np.asarray(y)
        if len(y) != len(x):
            raise InputError(
                f"x and y must have the same number of examples; received "
                f"{len(x)} images and {len(y)} labels."
            )
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise InputError("y contains NaN or Inf labels. Remove those examples.")
    if batch_size is not None and batch_size > len(x):
        warnings.warn(
            f"batch_size={batch_size} is larger than the labeled set ({len(x)} "
            f"images): every batch holds all {len(x)} of them, and the unlabeled "
            f"batch is unlabeled_ratio * {len(x)}. Pass batch_size <= {len(x)} to "
            "silence this.",
            stacklevel=3,
        )


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
            f"rank {image_rank}); received element spec {spec}."
        )


def check_unlabeled(unlabeled, x_sample, value_range):
    import tensorflow as tf

    if isinstance(unlabeled, tf.data.Dataset):
        if unlabeled.cardinality() == 0:
            raise InputError(
                "unlabeled is an empty dataset. Pass at least one unlabeled image, "
                "or unlabeled=None for supervised training."
            )
        spec = unlabeled.element_spec
        check_unlabeled_spec(spec, x_sample.ndim)
        shape = tuple(spec.shape[-3:])
        _check_same_image_shape(shape, x_sample)
        return
    if not _is_array(unlabeled) and not isinstance(unlabeled, (list, tuple)):
        return  # PyDataset: checked on its first batch in data.py
    images = np.asarray(unlabeled)
    if images.size == 0 or len(images) == 0:
        raise InputError(
            "unlabeled is empty. Pass at least one unlabeled image, or "
            "unlabeled=None for supervised training."
        )
    check_images(images, "unlabeled")
    _check_same_image_shape(images.shape[1:], x_sample)
    check_value_range(images, value_range, "unlabeled")


def _check_same_image_shape(shape, x_sample):
    expected = tuple(x_sample.shape[1:])
    if any(a is not None and a != b for a, b in zip(shape, expected)) or len(
        shape
    ) != len(expected):
        raise InputError(
            f"unlabeled images have shape {tuple(shape)} but labeled images have "
            f"shape {expected}. Resize or crop them to the same (height, width, "
            "channels) before fit()."
        )


def check_outputs(ssl_model, x_sample, y_sample):
    """Checks that need one forward pass and the compiled loss."""
    import keras

    outputs = keras.ops.convert_to_numpy(ssl_model.model(x_sample[:2], training=False))
    if outputs.ndim != 2 or outputs.shape[-1] < 2:
        raise InputError(
            f"The wrapped model must output class scores of shape (batch, "
            f"classes) with classes >= 2; it outputs shape {outputs.shape}. "
            "keras-ssl trains classifiers: end the model with "
            "keras.layers.Dense(num_classes)."
        )
    num_classes = outputs.shape[-1]
    looks_like_probs = bool(
        np.all(outputs >= 0) and np.allclose(outputs.sum(-1), 1.0, atol=1e-3)
    )
    loss = getattr(ssl_model, "loss", None)
    from_logits_loss = getattr(loss, "from_logits", None)
    if from_logits_loss is None and hasattr(loss, "get_config"):
        from_logits_loss = loss.get_config().get("from_logits")
    if not ssl_model.from_logits and from_logits_loss:
        raise InputError(
            "The wrapped model ends with a softmax (it outputs probabilities) but "
            "the compiled loss has from_logits=True. Compile with "
            "from_logits=False, or remove the final softmax (e.g. "
            "classifier_activation=None) and keep from_logits=True."
        )
    if ssl_model.from_logits and from_logits_loss is False and not looks_like_probs:
        raise InputError(
            "The wrapped model outputs logits (no final softmax) but the compiled "
            "loss has from_logits=False. Compile with from_logits=True, or pass "
            "SemiSupervisedModel(..., outputs='probabilities') if the model does "
            "apply a softmax."
        )
    if y_sample is None:
        return
    y_sample = np.asarray(y_sample)
    sparse_loss = _is_sparse_loss(loss)
    one_hot = y_sample.ndim == 2 and y_sample.shape[-1] == num_classes and num_classes > 1
    if sparse_loss is True and one_hot:
        raise InputError(
            f"The labels are one-hot (shape {y_sample.shape}) but the loss is "
            "sparse categorical cross-entropy. Pass integer labels "
            "(y.argmax(-1)) or compile with "
            "keras.losses.CategoricalCrossentropy()."
        )
    if sparse_loss is False and not one_hot:
        raise InputError(
            f"The labels are integers (shape {y_sample.shape}) but the loss is "
            "categorical cross-entropy, which expects one-hot labels. Compile "
            "with keras.losses.SparseCategoricalCrossentropy() or pass "
            "keras.utils.to_categorical(y, num_classes)."
        )
    if not one_hot:
        labels = y_sample.reshape(-1)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise InputError(
                f"Labels must be integers in [0, {num_classes - 1}] for a model "
                f"with {num_classes} outputs; received labels in "
                f"[{labels.min()}, {labels.max()}]. Check the label encoding or "
                "the model's number of classes."
            )
    del keras


def _is_sparse_loss(loss):
    if loss is None:
        return None
    if isinstance(loss, str):
        name = loss
    elif hasattr(loss, "fn"):  # a Keras LossFunctionWrapper
        name = type(loss).__name__ + getattr(loss.fn, "__name__", "")
    else:
        name = getattr(loss, "__name__", type(loss).__name__)
    name = name.lower().replace("_", "")
    if "sparsecategorical" in name:
        return True
    if "categoricalcrossentropy" in name:
        return False
    return None
