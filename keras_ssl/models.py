"""Small classifiers that take raw 0-255 pixels (the normalization is inside).

keras-ssl's views augment raw pixels, so every model here starts with its own
rescaling (or a backbone that normalizes inside), and can be saved and loaded
with plain Keras.
"""

import keras

from keras_ssl.batchnorm import batchnorm_layers

layers = keras.layers


def unfreeze(backbone, batchnorm=False):
    """Make a frozen backbone trainable for fine-tuning, its BatchNorm layers still frozen.

    In Keras 3 `backbone(x, training=False)` inside a functional model does
    not keep the backbone's BatchNorm layers in inference mode: `fit` calls the
    model with `training=True`, which overrides the `training=False` recorded
    when the model was built (keras-team/keras#20285). What keeps a
    BatchNormalization layer in inference mode in training is
    `layer.trainable = False`. So after `backbone.trainable = True` the
    pretrained moving statistics would be replaced by those of your batches,
    which is rarely what fine-tuning a pretrained backbone wants. This sets
    `backbone.trainable = True` and then every BatchNormalization layer in it
    (nested ones too) back to `trainable = False`: they normalize with their
    pretrained statistics, their gamma and beta stay as they are, and
    keras-ssl's BatchNorm recompute (`BatchNormWarmup`, `ema_weights(
    batchnorm_data=...)`) leaves them alone. Recompile after calling it.

    Example:

    ```python
    backbone.trainable = False          # phase 1: the head only
    ssl.compile(optimizer=keras.optimizers.Adam(1e-3))
    ssl.fit(x, y, unlabeled=u, epochs=5)
    keras_ssl.models.unfreeze(backbone)  # phase 2: fine-tune, BatchNorm frozen
    ssl.compile(optimizer=keras.optimizers.Adam(1e-5))
    ssl.fit(x, y, unlabeled=u, epochs=5)
    ```

    Args:
        backbone: a Keras model or layer (e.g. a `keras.applications` model
            built with `include_top=False`).
        batchnorm: also train the BatchNorm layers (training mode: batch
            statistics, moving statistics updated). Default False. Use True
            for a backbone that was not pretrained (`weights=None`).

    Returns:
        The BatchNormalization layers left frozen (empty with `batchnorm=True`).
    """
    if not isinstance(backbone, keras.layers.Layer):
        raise TypeError(
            f"unfreeze(backbone) takes a Keras model or layer; received "
            f"{type(backbone).__name__}.")
    backbone.trainable = True
    if batchnorm:
        return []
    frozen = batchnorm_layers(backbone)  # every one of them, now that all are trainable
    for layer in frozen:
        layer.trainable = False
    return frozen


def cnn6(input_shape=(32, 32, 3), num_classes=10, value_range=(0, 255)):
    """The CPU protocol's CNN: 32-32-64-64-128-128 conv with BatchNorm, logits out.

    Pixels are rescaled to [-1, 1] inside the model, so it takes raw uint8.
    """
    low, high = value_range
    net = [keras.Input(input_shape),
           layers.Rescaling(2.0 / (high - low), offset=-1.0 - 2.0 * low / (high - low))]
    for i, filters in enumerate((32, 32, 64, 64, 128, 128)):
        net += [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(), layers.ReLU()]
        if i % 2 == 1 and i < 5:
            net.append(layers.MaxPooling2D())
    net += [layers.GlobalAveragePooling2D(), layers.Dense(num_classes)]
    return keras.Sequential(net, name="cnn6")


def _to_rgb(x, channels):
    if channels == 3:
        return x
    if channels == 1:
        return layers.Concatenate()([x, x, x])
    raise ValueError(f"Images with {channels} channels cannot feed an ImageNet backbone.")


def mobilenet(input_shape, num_classes, alpha=0.5):
    """MobileNetV2 from scratch (`weights=None`) on raw 0-255 pixels, logits out.

    Images smaller than 32x32 are upsampled inside the model; grayscale
    images are repeated to 3 channels.
    """
    inputs = keras.Input(input_shape)
    x = _to_rgb(inputs, input_shape[-1])
    side = max(32, int(input_shape[0]))
    if tuple(input_shape[:2]) != (side, side):
        x = layers.Resizing(side, side)(x)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)
    backbone = keras.applications.MobileNetV2(
        input_shape=(side, side, 3), alpha=alpha, include_top=False, weights=None)
    x = layers.GlobalAveragePooling2D()(backbone(x))
    return keras.Model(inputs, layers.Dense(num_classes)(x), name="mobilenet_v2")


def efficientnet(input_shape, num_classes):
    """EfficientNetB0 from scratch on raw 0-255 pixels (it normalizes inside), logits out."""
    inputs = keras.Input(input_shape)
    x = _to_rgb(inputs, input_shape[-1])
    side = max(32, int(input_shape[0]))
    if tuple(input_shape[:2]) != (side, side):
        x = layers.Resizing(side, side)(x)
    backbone = keras.applications.EfficientNetB0(
        input_shape=(side, side, 3), include_top=False, weights=None)
    x = layers.GlobalAveragePooling2D()(backbone(x))
    return keras.Model(inputs, layers.Dense(num_classes)(x), name="efficientnet_b0")


BUILDERS = {"cnn": cnn6, "mobilenet": mobilenet, "efficientnet": efficientnet}


def build(name, input_shape, num_classes):
    """One of `BUILDERS` by name, for `input_shape` images and `num_classes`."""
    if name not in BUILDERS:
        raise ValueError(f"Unknown model {name!r}; choose one of {sorted(BUILDERS)} or a "
                         ".keras file.")
    return BUILDERS[name](input_shape=tuple(input_shape), num_classes=num_classes)
