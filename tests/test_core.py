"""The SSL step, the zipped data source and the wrapping contract."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cheap_views, tiny_cnn

import keras_ssl


def _ssl(model=None, algorithm=None, ratio=2, **kwargs):
    # FixMatch(0.8) unless told: these tests are about the step and the views
    # of a two-view algorithm (the library's default for array inputs is
    # SelfTraining; tests/test_self_training.py covers the default's choice).
    algorithm = keras_ssl.FixMatch(threshold=0.8) if algorithm is None else algorithm
    m = keras_ssl.SemiSupervisedModel(model or tiny_cnn(), algorithm, unlabeled_ratio=ratio,
                                      **kwargs)
    m.compile(optimizer="adam", metrics=["accuracy"])
    return m


def test_fit_reports_ssl_metrics_and_trains_wrapped_model_in_place(images):
    x, y, u = images
    inner = tiny_cnn()
    before = [w.copy() for w in inner.get_weights()]
    m = _ssl(inner, keras_ssl.FixMatch(threshold=0.5))
    h = m.fit(x, y, unlabeled=u, unlabeled_labels=np.zeros(len(u), "int64"),
              batch_size=8, epochs=2, verbose=0)
    for key in ("loss", "sup_loss", "unsup_loss", "mask_rate", "pseudo_label_accuracy",
                "accuracy"):
        assert key in h.history and len(h.history[key]) == 2, key
    assert all(np.isfinite(v).all() for v in h.history.values())
    assert any(not np.allclose(a, b) for a, b in zip(before, inner.get_weights()))
    # 24 labeled images at batch 8 -> 3 steps per epoch, 2 epochs.
    assert int(m.ssl_step.numpy()) == 6


def test_supervised_fit_uses_the_same_path_without_unsup_metrics(images):
    x, y, _ = images
    m = _ssl()
    h = m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert "mask_rate" not in h.history and "pseudo_label_accuracy" not in h.history
    assert h.history["unsup_loss"] == [0.0]
    assert h.history["loss"][0] == pytest.approx(h.history["sup_loss"][0], rel=1e-5)


def test_dataset_shapes_follow_unlabeled_ratio(images):
    x, y, u = images
    m = _ssl(ratio=3)
    ds = m.make_train_dataset(x, y, batch_size=4, unlabeled=u)
    inputs, labels = next(iter(ds))
    assert inputs["labeled"].shape == (4, 8, 8, 3)
    assert inputs["weak"].shape == inputs["strong"].shape == (12, 8, 8, 3)
    assert labels.shape == (4,)


def test_every_labeled_batch_is_full(images):
    """No partial last batch (a new shape: a retrace, on JAX a recompile)."""
    x, y, u = images
    x, y = x[:10], y[:10]
    m = _ssl(ratio=2)
    epoch = list(m.make_train_dataset(x, y, batch_size=4, unlabeled=u))
    assert [int(inputs["labeled"].shape[0]) for inputs, _ in epoch] == [4, 4, 4]
    labels = np.concatenate([labels.numpy() for _, labels in epoch])
    assert sorted(labels[:10]) == sorted(y)  # every image once, then a fill
    stream = m.make_train_dataset(x, y, batch_size=4, unlabeled=u, steps_per_epoch=5)
    labels = np.concatenate([labels.numpy() for _, labels in stream.take(5)])
    assert sorted(labels[:10]) == sorted(labels[10:]) == sorted(y)
    history = m.fit(x, y, unlabeled=u, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_one_concatenated_forward_pass_per_step(images):
    """Labeled, weak and strong images go through the model as one batch."""
    x, y, u = images
    seen = []

    class Spy(keras.Model):
        def __init__(self):
            super().__init__()
            self.net = tiny_cnn()

        def call(self, inputs, training=False):
            if training:
                seen.append(int(inputs.shape[0]))
            return self.net(inputs, training=training)

    spy = Spy()
    spy(x[:1])
    m = _ssl(spy, ratio=2)
    m.run_eagerly = True
    m.fit(x[:8], y[:8], unlabeled=u, batch_size=8, epochs=1, verbose=0)
    assert seen == [8 + 2 * 16]


def test_unlabeled_inputs_of_every_kind(images):
    x, y, u = images

    class Unlabeled(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return u[i * 16:(i + 1) * 16]

    for unlabeled in (u, tf.data.Dataset.from_tensor_slices(u),
                      tf.data.Dataset.from_tensor_slices(u).batch(10), Unlabeled()):
        # A threshold every prediction passes: each unlabeled batch that
        # arrives counts in the mask rate and the loss.
        m = _ssl(algorithm=cheap_views(keras_ssl.FixMatch(threshold=1e-6)))
        h = m.fit(x, y, unlabeled=unlabeled, batch_size=8, epochs=1, verbose=0)
        assert h.history["mask_rate"][0] == pytest.approx(1.0)
        assert h.history["unsup_loss"][0] > 0


def test_zipped_dataset_as_x(images):
    x, y, u = images
    labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    unlabeled = tf.data.Dataset.from_tensor_slices(u).repeat().batch(16)
    m = _ssl()
    h = m.fit(tf.data.Dataset.zip((labeled, unlabeled)), epochs=1, verbose=0)
    assert "mask_rate" in h.history and int(m.ssl_step.numpy()) == 3


def test_steps_per_epoch_repeats_small_labeled_set(images):
    x, y, u = images
    m = _ssl()
    m.fit(x[:4], y[:4], unlabeled=u, batch_size=4, epochs=2, steps_per_epoch=5, verbose=0)
    assert int(m.ssl_step.numpy()) == 10


def test_uint8_images_infer_range_and_views_stay_in_range():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
    u = rng.integers(0, 256, (32, 8, 8, 3), dtype=np.uint8)
    m = _ssl()
    ds = m.make_train_dataset(x, rng.integers(0, 4, 8), batch_size=8, unlabeled=u)
    assert m.value_range == (0.0, 255.0)
    inputs, _ = next(iter(ds))
    for view in ("labeled", "weak", "strong"):
        arr = inputs[view].numpy()
        assert arr.min() >= 0 and arr.max() <= 255 and arr.max() > 1.5, view


def test_probability_outputs_are_detected_and_trained(images):
    x, y, u = images
    m = _ssl(tiny_cnn(softmax=True))
    assert m.from_logits is False
    h = m.fit(x, y, unlabeled=u, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(h.history["loss"][0])


def test_one_hot_labels_with_categorical_loss(images):
    x, y, u = images
    m = keras_ssl.SemiSupervisedModel(tiny_cnn(), unlabeled_ratio=2)
    m.compile("adam", keras.losses.CategoricalCrossentropy(from_logits=True), ["accuracy"])
    h = m.fit(x, keras.utils.to_categorical(y, 4), unlabeled=u, batch_size=8, epochs=1,
              verbose=0)
    assert np.isfinite(h.history["loss"][0])


def test_functional_and_subclassed_models(images):
    x, y, u = images
    inp = keras.Input((8, 8, 3))
    out = keras.layers.Dense(4)(keras.layers.Flatten()(inp))
    functional = keras.Model(inp, out)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat = keras.layers.Flatten()
            self.out = keras.layers.Dense(4)

        def call(self, inputs):
            return self.out(self.flat(inputs))

    for inner in (functional, Sub()):
        m = _ssl(inner, keras_ssl.MeanTeacher(rampup_steps=2))
        h = m.fit(x, y, unlabeled=u, batch_size=8, epochs=1, verbose=0)
        assert h.history["unsup_loss"][0] > 0  # the consistency loss did arrive
        assert int(m.ssl_step.numpy()) == 3


def test_evaluate_and_predict_match_wrapped_model(images):
    x, y, u = images
    inner = tiny_cnn()
    m = _ssl(inner)
    m.fit(x, y, unlabeled=u, batch_size=8, epochs=1, verbose=0)
    np.testing.assert_allclose(m.predict(x, verbose=0), inner.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    logs = m.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}


def test_validation_data_initial_epoch_and_callbacks(images):
    x, y, u = images
    m = _ssl()
    seen = []
    cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(e))
    h = m.fit(x, y, unlabeled=u, batch_size=8, epochs=3, initial_epoch=1,
              validation_data=(x, y), callbacks=[cb], verbose=0)
    assert seen == [1, 2]
    assert "val_loss" in h.history and "val_mask_rate" not in h.history


def test_unlabeled_loss_scale_zero_gives_supervised_loss(images):
    x, y, u = images
    m = _ssl(algorithm=keras_ssl.FixMatch(threshold=0.01))
    m.unlabeled_loss_scale.assign(0.0)
    h = m.fit(x, y, unlabeled=u, batch_size=8, epochs=1, verbose=0)
    assert h.history["unsup_loss"][0] > 0
    assert h.history["loss"][0] == pytest.approx(h.history["sup_loss"][0], rel=1e-5)


def test_mean_teacher_keeps_an_ema_teacher(images):
    x, y, u = images
    m = _ssl(algorithm=keras_ssl.MeanTeacher(rampup_steps=0), ema_decay=0.5)
    m.fit(x, y, unlabeled=u, batch_size=8, epochs=1, verbose=0)
    assert len(m.teacher_weights) == len(m.model.trainable_variables)
    diffs = [np.abs(t.numpy() - s.numpy()).max() for t, s in
             zip(m.teacher_weights, m.model.trainable_variables)]
    assert max(diffs) > 0  # it lags the student


@pytest.mark.slow
def test_mobilenet_from_keras_applications_with_uint8_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    u = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    net = keras.applications.MobileNet(input_shape=(32, 32, 3), weights=None, classes=10,
                                       classifier_activation=None, alpha=0.25)
    m = _ssl(net)
    h = m.fit(x, rng.integers(0, 10, 4), unlabeled=u, batch_size=4, epochs=1, verbose=0)
    assert m.value_range == (0.0, 255.0)
    assert np.isfinite(h.history["loss"][0]) and "mask_rate" in h.history


def test_algorithm_and_model_configs():
    fm = keras_ssl.FixMatch(threshold=0.9, unlabeled_weight=2.0)
    assert keras_ssl.FixMatch.from_config(fm.get_config()).threshold == 0.9
    with pytest.warns(FutureWarning, match=r"MeanTeacher\(ema_decay=\.\.\.\) is deprecated"):
        mt = keras_ssl.MeanTeacher(ema_decay=0.99)
    assert keras_ssl.MeanTeacher.from_config(mt.get_config()).ema_decay == 0.99
    assert _ssl(algorithm=mt).ema_decay == 0.99  # the deprecated spelling still counts
    assert _ssl(algorithm=mt, ema_decay=0.9).ema_decay == 0.9  # the model's wins
    config = _ssl().get_config()
    assert config["unlabeled_ratio"] == 2 and config["algorithm"]["class_name"] == "FixMatch"
    assert config["ema_decay"] == 0.999 and config["name"] and "trainable" in config
    # The default is saved as "the default" (None), chosen again at each fit.
    config = keras_ssl.SemiSupervisedModel(tiny_cnn()).get_config()
    assert config["algorithm"] is None
    reloaded = keras_ssl.SemiSupervisedModel.from_config(config)
    assert isinstance(reloaded.algorithm, keras_ssl.SelfTraining)
    assert reloaded._default_algorithm
    with pytest.raises(ValueError, match=r"MeanTeacher needs the model's EMA teacher"):
        _ssl(algorithm=keras_ssl.MeanTeacher(), ema_decay=None)


def test_registry_builds_every_algorithm_by_name():
    names = keras_ssl.algorithms.names()
    assert {"fixmatch", "freematch", "mean_teacher"} <= set(names)
    for name in names:
        algorithm = keras_ssl.algorithms.get(name)
        assert isinstance(algorithm, keras_ssl.Algorithm) and algorithm.name == name
        # The labeled view is one the algorithm builds (not necessarily one of
        # the unlabeled views: SelfTraining trains unlabeled images on the
        # strong view only).
        built = algorithm.build_views((0.0, 255.0))
        assert algorithm.labeled_view in (None, *built)
        assert set(algorithm.views) | set(algorithm.teacher_views) <= set(built)
    assert keras_ssl.algorithms.get("FixMatch", threshold=0.7).threshold == 0.7
    assert keras_ssl.algorithms.get("mean-teacher", steps=1000).rampup_steps == 300
    with pytest.raises(ValueError, match=r"Unknown algorithm 'softmatchx'\. Registered: "):
        keras_ssl.algorithms.get("softmatchx")
