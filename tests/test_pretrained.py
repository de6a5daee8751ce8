"""Pretrained-backbone patterns: preprocess_input ranges, freezing and the EMA."""

import keras
import numpy as np
import pytest
from conftest import tiny_cnn

import keras_ssl
from keras_ssl import InputError

apps = keras.applications
FAMILIES = {
    # family: (preprocess_input, what keras-ssl must do with its output)
    "caffe (ResNet50, VGG)": (apps.resnet50.preprocess_input, "refuse"),
    "torch (DenseNet)": (apps.densenet.preprocess_input, "refuse"),
    "tf (MobileNetV2, Xception)": (apps.mobilenet_v2.preprocess_input, (-1.0, 1.0)),
}


def _raw(n=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3)).astype("float32")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_preprocess_input_ranges_are_never_clipped_by_the_views(family):
    preprocess, expected = FAMILIES[family]
    x = np.asarray(preprocess(_raw().copy()))
    u = np.asarray(preprocess(_raw(64, 1).copy()))
    y = np.arange(32) % 4
    keras.utils.set_random_seed(0)
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), keras_ssl.FixMatch(), unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    if expected == "refuse":
        # Neither inferred nor trained on: the strong view would clip the
        # negative half of these values to the bottom of a guessed range.
        before = [w.copy() for w in ssl.model.get_weights()]
        with pytest.raises(InputError, match="Cannot tell the pixel range"):
            ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, verbose=0)
        for a, b in zip(before, ssl.model.get_weights()):
            np.testing.assert_array_equal(a, b)
        assert ssl.value_range is None
        return
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=2, verbose=0)
    assert ssl.value_range == expected
    # The strong view works in the data's own range: the negative half survives
    # (a 0-255 or [0, 1] view would clip it to the bottom of its range).
    strong = ssl.algorithm.build_views(ssl.value_range)["strong"]
    out = keras.ops.convert_to_numpy(strong(u, training=True))
    assert -1.0 - 1e-5 <= out.min() < -0.5


def test_preprocessing_inside_the_model_lets_the_views_see_raw_pixels():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)  # mobilenet_v2.preprocess_input
    outputs = tiny_cnn()(x)
    keras.utils.set_random_seed(0)
    ssl = keras_ssl.SemiSupervisedModel(keras.Model(inputs, outputs), unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    raw = _raw().astype("uint8")
    ssl.fit(raw, np.arange(32) % 4, unlabeled=_raw(64, 1).astype("uint8"), batch_size=8,
            epochs=1, steps_per_epoch=2, verbose=0)
    assert ssl.value_range == (0.0, 255.0)


def _backbone_model():
    backbone = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                                 keras.layers.BatchNormalization()], name="backbone")
    inputs = keras.Input((8, 8, 3))
    x = backbone(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x)), backbone


def test_frozen_then_fine_tuned_backbone_keeps_the_ema_paired():
    model, backbone = _backbone_model()
    backbone.trainable = False
    keras.utils.set_random_seed(0)
    ssl = keras_ssl.SemiSupervisedModel(model, unlabeled_ratio=2, ema_decay=0.9)
    ssl.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, y, u = _raw(), np.arange(32) % 4, _raw(64, 1)
    pretrained = keras.ops.convert_to_numpy(backbone.weights[0]).copy()
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=3, verbose=0)
    sources = ssl.teacher_sources
    assert len(sources) == len(ssl.teacher_weights) == 6  # conv 2, BN gamma/beta, dense 2
    assert len(ssl.model.trainable_variables) == 2  # only the head trained
    # Frozen: the backbone and its EMA are the pretrained weights.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(backbone.weights[0]), pretrained)
    index = [id(v) for v in sources].index(id(backbone.weights[0]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ssl.teacher_weights[index]),
                               pretrained)
    backbone.trainable = True
    ssl.compile(optimizer=keras.optimizers.Adam(1e-3))
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=3, verbose=0)
    assert [id(v) for v in ssl.teacher_sources] == [id(v) for v in sources]
    # Each EMA variable still averages its own weight (same shapes, close values).
    for variable, average in zip(ssl.teacher_sources, ssl.teacher_weights):
        assert tuple(variable.shape) == tuple(average.shape)
    moved = keras.ops.convert_to_numpy(backbone.weights[0])
    assert not np.array_equal(moved, pretrained)
    ema = keras.ops.convert_to_numpy(ssl.teacher_weights[index])
    assert np.abs(ema - pretrained).max() <= np.abs(moved - pretrained).max() + 1e-6
    # The teacher export carries the averaged backbone.
    exported = ssl.export_model("teacher")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(exported.get_layer("backbone").weights[0]), ema)


def _batchnorm_state(backbone):
    bn = next(layer for layer in backbone.layers
              if isinstance(layer, keras.layers.BatchNormalization))
    return bn, [keras.ops.convert_to_numpy(v).copy() for v in bn.variables]


def _fine_tune(unfreeze_with):
    """A frozen first fit, then fine-tuning after `unfreeze_with(backbone)`."""
    model, backbone = _backbone_model()  # the backbone is called with training=False
    backbone.trainable = False
    keras.utils.set_random_seed(0)
    ssl = keras_ssl.SemiSupervisedModel(model, unlabeled_ratio=2)
    ssl.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, y, u = _raw(), np.arange(32) % 4, _raw(64, 1)
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=2, verbose=0)
    bn, before = _batchnorm_state(backbone)
    kernel = keras.ops.convert_to_numpy(backbone.weights[0]).copy()
    unfreeze_with(backbone)
    ssl.compile(optimizer=keras.optimizers.Adam(1e-2))
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=3, verbose=0)
    _, after = _batchnorm_state(backbone)
    moved = not np.array_equal(keras.ops.convert_to_numpy(backbone.weights[0]), kernel)
    return ssl, bn, before, after, moved


def test_training_false_alone_does_not_keep_batchnorm_in_inference_mode_in_fit():
    # The reason for `unfreeze` (keras-team/keras#20285): fit's training=True
    # overrides the training=False recorded in the functional graph, so the
    # pretrained moving statistics are overwritten. If a Keras release changes
    # this, docs/pretrained.md's rule 3 must be rewritten.
    _, bn, before, after, moved = _fine_tune(lambda b: setattr(b, "trainable", True))
    assert moved and bn.trainable
    names = [v.name for v in bn.variables]
    mean = names.index("moving_mean")
    assert not np.allclose(after[mean], before[mean])


def test_unfreeze_trains_the_backbone_and_keeps_its_batchnorm_frozen():
    ssl, bn, before, after, moved = _fine_tune(keras_ssl.models.unfreeze)
    assert moved, "the backbone's convolution did not train after unfreeze"
    assert not bn.trainable
    for a, b in zip(before, after):  # gamma, beta and the moving statistics
        np.testing.assert_array_equal(a, b)
    # The EMA still pairs every designed-trainable weight, frozen ones included.
    assert len(ssl.teacher_sources) == len(ssl.teacher_weights) == 6
    # BatchNorm recompute leaves the frozen layer alone.
    touched = keras_ssl.callbacks.recompute_batchnorm_statistics(ssl.model, _raw(64, 2))
    assert bn not in touched
    np.testing.assert_array_equal(_batchnorm_state(ssl.model.get_layer("backbone"))[1][2],
                                  before[2])


def test_unfreeze_with_batchnorm_trains_everything_and_refuses_non_layers():
    _, backbone = _backbone_model()
    backbone.trainable = False
    assert keras_ssl.models.unfreeze(backbone, batchnorm=True) == []
    assert all(layer.trainable for layer in backbone.layers)
    frozen = keras_ssl.models.unfreeze(backbone)
    assert [type(layer).__name__ for layer in frozen] == ["BatchNormalization"]
    with pytest.raises(TypeError, match="Keras model or layer"):
        keras_ssl.models.unfreeze([backbone])
