"""Self-training with a pseudo-label table: the table, its refreshes, the step."""

import keras
import numpy as np
import pytest
from conftest import cheap_views, tiny_cnn

import keras_ssl
from keras_ssl import InputError


def _data(seed=0, n_unlabeled=64):
    rng = np.random.default_rng(seed)
    x, y = rng.random((16, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 16)
    u = rng.random((n_unlabeled, 8, 8, 3)).astype("float32")
    return x, y, u


def _model(algorithm, ratio=2, **kwargs):
    keras.utils.set_random_seed(0)
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), cheap_views(algorithm),
                                        unlabeled_ratio=ratio, **kwargs)
    ssl.compile(optimizer="adam")
    return ssl


def test_alignment_makes_the_mean_prediction_the_prior():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([5.0, 1.0, 1.0, 1.0], size=500)  # biased to class 0
    uniform = keras_ssl.SelfTraining().table_targets(probs)
    np.testing.assert_allclose(uniform.sum(axis=1), 1.0, rtol=1e-5)
    # One round of alignment moves the mean most of the way to uniform.
    assert np.abs(uniform.mean(axis=0) - 0.25).max() < np.abs(probs.mean(axis=0) - 0.25).max() / 3
    prior = [0.4, 0.2, 0.2, 0.2]
    shifted = keras_ssl.SelfTraining(class_prior=prior).table_targets(probs)
    assert shifted.mean(axis=0)[0] > uniform.mean(axis=0)[0]
    raw = keras_ssl.SelfTraining(distribution_alignment=False).table_targets(probs)
    np.testing.assert_allclose(raw, probs, rtol=1e-6)


def test_loss_uses_the_stored_labels_where_confident():
    algorithm = keras_ssl.SelfTraining(threshold=0.8, weighting="threshold")
    table = np.array([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2]], "float32")
    logits = np.zeros((2, 3), "float32")
    result = algorithm.unlabeled_loss({"strong": logits}, {"table": np.log(table)}, 0)
    # Only the first image is confident: loss = ln(3) / 2 (mean over the batch).
    assert float(keras.ops.convert_to_numpy(result.loss)) == pytest.approx(np.log(3) / 2,
                                                                          rel=1e-5)
    assert float(keras.ops.convert_to_numpy(result.metrics["mask_rate"])) == 0.5
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(result.pseudo_labels), [0, 0])


def test_soft_weighting_draws_every_image_and_weighs_doubtful_labels_less():
    algorithm = keras_ssl.SelfTraining(threshold=0.8, weighting="soft")
    table = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.4, 0.4]], "float32")
    assert algorithm.table_selection(table).all()
    logits = np.zeros((3, 3), "float32")
    result = algorithm.unlabeled_loss({"strong": logits}, {"table": np.log(table)}, 0)
    confidence = table.max(axis=1)
    mean, variance = confidence.mean(), confidence.var()
    # SoftMatch's truncated Gaussian below the batch's mean confidence, 1 at
    # the threshold and above (and at or above the mean).
    weights = np.exp(-np.minimum(confidence - mean, 0) ** 2 / (2 * variance / 2.0 ** 2))
    weights[0] = 1.0
    assert 0 < weights[2] < weights[1] < 1.0
    assert float(keras.ops.convert_to_numpy(result.loss)) == pytest.approx(
        np.log(3) * weights.sum() / 3, rel=1e-5)
    assert float(keras.ops.convert_to_numpy(result.metrics["mask_rate"])) == pytest.approx(
        weights.mean(), rel=1e-5)
    # A wider Gaussian (smaller n_sigma) weighs the doubtful label more.
    wide = keras_ssl.SelfTraining(threshold=0.8, weighting="soft", n_sigma=1.0).unlabeled_loss(
        {"strong": logits}, {"table": np.log(table)}, 0)
    assert float(keras.ops.convert_to_numpy(wide.loss)) > float(
        keras.ops.convert_to_numpy(result.loss))


def test_auto_refresh_interval_keeps_labelling_at_a_tenth_of_the_compute():
    algorithm = keras_ssl.SelfTraining()
    # ceil(n / (3 * 0.1 * images per step)): labelling n images (forward
    # only) costs about a tenth of training on that many steps.
    assert algorithm.refresh_interval(20000, 32 + 96) == 521
    assert algorithm.refresh_interval(1237, 20 + 140) == 26
    assert algorithm.refresh_interval(10, 1000) == 1
    assert keras_ssl.SelfTraining(refresh_every=100).refresh_interval(20000, 128) == 100
    # In fit: 64 images, batches of 8 + 16: every ceil(64 / 7.2) = 9 steps
    # (min_selected=0: no table counts as unconfident).
    x, y, u = _data()
    ssl = _model(keras_ssl.SelfTraining(min_selected=0.0, min_labeled_accuracy=0))
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=2, steps_per_epoch=10, verbose=0)
    table = ssl.pseudo_label_table
    assert (table.refreshes, table.refreshed_at_step) == (3, 18)  # before steps 0, 9, 18


def test_auto_refresh_comes_four_times_sooner_while_the_table_is_unconfident():
    algorithm = keras_ssl.SelfTraining(threshold=0.8, min_selected=0.1)
    rows = np.full((100, 2), 0.5, dtype="float32")
    rows[:5] = [0.9, 0.1]  # 5 % confident: under min_selected
    assert algorithm.refresh_interval(20000, 32 + 96, rows) == 131  # ceil(521 / 4)
    rows[:10] = [0.9, 0.1]  # 10 %: a table worth drawing from
    assert algorithm.refresh_interval(20000, 32 + 96, rows) == 521
    assert algorithm.refresh_interval(20000, 32 + 96, None) == 521
    fixed = keras_ssl.SelfTraining(refresh_every=100)
    assert fixed.refresh_interval(20000, 128, rows[10:]) == 100
    # In fit: an untrained model's table is unconfident, so it is labelled
    # again every ceil(9 / 4) = 3 steps instead of 9.
    x, y, u = _data()
    ssl = _model(keras_ssl.SelfTraining(threshold=0.99, min_labeled_accuracy=0))
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=10, verbose=0)
    table = ssl.pseudo_label_table
    assert (table.refreshes, table.refreshed_at_step) == (4, 9)  # before steps 0, 3, 6, 9


def test_batchnorm_statistics_are_recomputed_while_the_moving_ones_are_young():
    algorithm = keras_ssl.SelfTraining()
    net = tiny_cnn()  # BatchNormalization with Keras's momentum 0.99
    assert 0.99 ** 458 > 0.01 > 0.99 ** 459
    assert algorithm.refresh_batchnorm_steps(net, 0) == 20
    assert algorithm.refresh_batchnorm_steps(net, 458) == 20
    assert algorithm.refresh_batchnorm_steps(net, 459) == 0
    net.layers[1].momentum = 0.9  # younger for less long: 0.9 ** 44 < 0.01
    assert algorithm.refresh_batchnorm_steps(net, 43) == 20
    assert algorithm.refresh_batchnorm_steps(net, 44) == 0
    dense = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    assert algorithm.refresh_batchnorm_steps(dense, 0) == 0
    assert keras_ssl.SelfTraining(batchnorm_steps=5).refresh_batchnorm_steps(net, 10 ** 6) == 5
    # A refresh records what it did.
    x, y, u = _data()
    ssl = _model(keras_ssl.SelfTraining(min_labeled_accuracy=0))
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=2, verbose=0)
    assert ssl.pseudo_label_table.batchnorm_steps == 20


def mid_epoch_refresh_scenario():
    """One epoch of 10 steps, a refresh every 3: before steps 0, 3, 6 and 9.

    Returns the refreshes, the last refresh's step and how far the table is
    from the current model's predictions just before step 9 (what the last
    refresh must have labelled with).
    """
    x, y, u = _data()
    ssl = _model(keras_ssl.SelfTraining(refresh_every=3, batchnorm_steps=0,
                                        min_labeled_accuracy=0))
    seen = {}

    class Before9(keras.callbacks.Callback):  # runs after the table's refresh
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 9:
                sync = getattr(self.model, "jax_state_sync", None)
                if sync is not None:
                    sync()
                probs = keras.ops.softmax(self.model.model(u, training=False))
                seen["rows"] = self.model.algorithm.table_targets(
                    keras.ops.convert_to_numpy(probs))

    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=10, verbose=0,
            callbacks=[Before9()])
    table = ssl.pseudo_label_table
    after = keras.ops.convert_to_numpy(keras.ops.softmax(ssl.model(u, training=False)))
    return {"refreshes": table.refreshes, "step": table.refreshed_at_step,
            "error": float(np.abs(table.probs - seen["rows"]).max()),
            "changed_by_the_last_step": float(
                np.abs(table.probs - ssl.algorithm.table_targets(after)).max())}


def test_the_table_is_refreshed_in_the_middle_of_an_epoch():
    result = mid_epoch_refresh_scenario()
    assert (result["refreshes"], result["step"]) == (4, 9)
    assert result["error"] < 1e-5
    assert result["changed_by_the_last_step"] > 1e-4  # the check can tell weights apart


@pytest.mark.slow
def test_the_mid_epoch_refresh_labels_with_the_current_weights_on_jax():
    # JAX's trainer keeps the weights outside the variables during an epoch:
    # without a sync the refresh would label with the epoch's first weights.
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([os.path.dirname(here), here,
                                           os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, os.path.join(here, "test_self_training.py")],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (done.stdout[-3000:], done.stderr[-3000:])
    result = json.loads(lines[-1][len("RESULT "):])
    assert (result["refreshes"], result["step"]) == (4, 9)
    assert result["error"] < 1e-5
    assert result["changed_by_the_last_step"] > 1e-4


def _fit_with_table(algorithm, epochs):
    """Fit 4 steps per epoch on `_data()`; return the history and the table."""
    x, y, u = _data()
    ssl = _model(algorithm)
    history = ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=epochs, steps_per_epoch=4,
                      verbose=0)
    return history, ssl.pseudo_label_table


def test_the_table_is_refreshed_when_due_and_reaches_the_step():
    history, table = _fit_with_table(
        keras_ssl.SelfTraining(threshold=0.0, refresh_every=8, min_labeled_accuracy=0),
        epochs=4)
    # At the start of the fit (step 0) and at the start of epoch 3 (step 8):
    # every 8 steps (not after the last step: a refresh is made before a step).
    assert table.refreshes == 2
    assert table.refreshed_at_step == 8
    assert table.probs.shape == (64, 4)
    np.testing.assert_allclose(table.probs.sum(axis=1), 1.0, rtol=1e-5)
    # With threshold 0 every image is selected and trained towards its row.
    assert len(table.selected) == 64
    assert history.history["mask_rate"] == [1.0] * 4
    assert min(history.history["unsup_loss"]) > 0


@pytest.mark.parametrize("use_ema,batchnorm_steps", [(False, 0), (True, 0), (False, 20),
                                                     (True, 20)])
def test_refreshing_leaves_the_weights_and_statistics_exactly_as_they_were(
        use_ema, batchnorm_steps):
    x, y, u = _data()
    ssl = _model(keras_ssl.SelfTraining(refresh_every=1000, use_ema=use_ema,
                                        batchnorm_steps=batchnorm_steps))
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=3, verbose=0)
    before = [keras.ops.convert_to_numpy(v).copy() for v in ssl.model.weights]
    ssl.pseudo_label_table.refresh(ssl)  # teacher weights (and statistics), then back
    after = [keras.ops.convert_to_numpy(v) for v in ssl.model.weights]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    # The table holds the teacher's predictions (the EMA weights or the
    # current ones; the moving BatchNorm statistics, or with batchnorm_steps
    # statistics recomputed for them on u).
    with ssl.ema_weights(batchnorm_data=u if batchnorm_steps else None,
                         batchnorm_steps=batchnorm_steps, student=not use_ema):
        teacher = keras.ops.convert_to_numpy(keras.ops.softmax(ssl.model(u)))
    np.testing.assert_allclose(ssl.pseudo_label_table.probs,
                               ssl.algorithm.table_targets(teacher), atol=1e-5)


def test_a_finite_stream_fills_the_table_and_an_endless_one_is_refused_with_the_fix():
    import tensorflow as tf

    x, y, u = _data()
    ssl = _model(keras_ssl.SelfTraining())
    ssl.fit(x, y, unlabeled=tf.data.Dataset.from_tensor_slices(u).batch(8), verbose=0)
    assert len(ssl.pseudo_label_table) == len(u)
    endless = tf.data.Dataset.from_tensor_slices(u).repeat().map(lambda image: image)
    with pytest.raises(InputError, match=r"infinite.*before .repeat\(\)"):
        ssl.fit(x, y, unlabeled=endless.batch(8), verbose=0)


def test_batches_are_drawn_from_the_confident_images_only():
    from keras_ssl.pseudo_table import PseudoLabelTable

    _, _, u = _data()
    labels = np.arange(64) % 4
    algorithm = keras_ssl.SelfTraining(threshold=0.9, weighting="threshold")
    table = PseudoLabelTable(u, 4, labels=labels, select=algorithm.table_selection, seed=0)
    rows = np.full((64, 4), 0.25, "float32")
    rows[np.arange(10), labels[:10]] = 0.97  # images 0-9 confident
    table.probs[...] = rows
    table.update_selection()
    np.testing.assert_array_equal(table.selected, np.arange(10))
    batch = next(iter(table.stream(16)))
    index = batch["index"].numpy()
    assert set(index) <= set(range(10))
    np.testing.assert_array_equal(batch["labels"].numpy(), labels[index])
    np.testing.assert_allclose(batch["targets"].numpy(), rows[index])
    np.testing.assert_array_equal(batch["images"].numpy(), u[index])


def test_selection_has_a_floor_of_the_most_confident_rows():
    algorithm = keras_ssl.SelfTraining(threshold=0.9, min_selected=0.25, weighting="threshold")
    rows = np.full((20, 4), 0.25, "float32")
    rows[[3, 7], 0] = 0.97  # two confident images: fewer than 25 % of 20
    rows[[1, 11, 15], 1] = [0.6, 0.5, 0.4]  # the next most confident
    selected = np.flatnonzero(algorithm.table_selection(rows))
    np.testing.assert_array_equal(selected, [1, 3, 7, 11, 15])  # 5 = 25 % of 20
    rows[:10, 2] = 0.95  # enough confident images: the floor does nothing
    confident_only = algorithm.table_selection(rows)
    np.testing.assert_array_equal(np.flatnonzero(confident_only), np.arange(10))
    none = keras_ssl.SelfTraining(threshold=0.99, min_selected=0.0,
                                  weighting="threshold").table_selection(rows)
    assert not none.any()
    with pytest.raises(ValueError, match="min_selected"):
        keras_ssl.SelfTraining(min_selected=1.5)


def test_balanced_draw_gives_each_pseudo_label_class_an_equal_share():
    from keras_ssl.pseudo_table import PseudoLabelTable

    rows = np.full((100, 4), 0.1, "float32")
    rows[:, 3] = 0.7  # unconfident rows (argmax class 3)
    counts = {0: 40, 1: 8, 2: 1}  # confident rows per class; none of class 3
    start = 0
    for c, n in counts.items():
        rows[start:start + n] = 0.02
        rows[start:start + n, c] = 0.94
        start += n
    balanced = keras_ssl.SelfTraining(threshold=0.8, min_selected=0.0)  # balanced by default
    table = PseudoLabelTable(np.zeros((100, 2, 2, 1), "float32"), 4,
                             select=balanced.table_selection, seed=0)
    table.probs[...] = rows
    table.update_selection()
    np.testing.assert_array_equal(table.selected, np.arange(49))  # only the confident rows
    drawn = np.concatenate([table.draw(1) for _ in range(6000)])
    share = np.bincount(rows[drawn].argmax(axis=1), minlength=4) / len(drawn)
    # Classes 0 and 1 equally often; class 2's one image counts as a quarter
    # of a fair share (49 / 4 rows): a third of their share, not 40 times it.
    expected = np.array([1.0, 1.0, 1.0 / (0.25 * 49 / 4), 0.0])
    np.testing.assert_allclose(share, expected / expected.sum(), atol=0.02)
    # Without balancing each selected image is drawn equally often: by pool size.
    uniform = keras_ssl.SelfTraining(threshold=0.8, min_selected=0.0, balance_classes=False)
    assert uniform.table_selection(rows).dtype == bool
    table.select = uniform.table_selection
    table.update_selection()
    drawn = np.concatenate([table.draw(1) for _ in range(6000)])
    share = np.bincount(rows[drawn].argmax(axis=1), minlength=4) / len(drawn)
    np.testing.assert_allclose(share, [40 / 49, 8 / 49, 1 / 49, 0.0], atol=0.02)
    table.select = lambda rows: -np.ones(len(rows))
    with pytest.raises(ValueError, match="non-negative weights"):
        table.update_selection()


def test_in_training_every_drawn_image_is_confident():
    history, table = _fit_with_table(
        keras_ssl.SelfTraining(threshold=0.3, refresh_every=4, min_selected=0.0,
                               min_labeled_accuracy=0,
                               batchnorm_steps=20, weighting="threshold"), epochs=3)
    assert 0 < len(table.selected) < 64
    # Batches come from the selected images only, so none is masked out.
    assert history.history["mask_rate"][-1] == 1.0


def test_fit_without_unlabeled_images_makes_no_table():
    x, y, _ = _data()
    ssl = _model(keras_ssl.SelfTraining())
    ssl.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert ssl.pseudo_label_table is None


def test_config_roundtrip_and_argument_errors():
    algorithm = keras_ssl.SelfTraining(threshold=0.9, refresh_every=100, flip=False,
                                       class_prior=[0.5, 0.5])
    restored = keras_ssl.SelfTraining.from_config(algorithm.get_config())
    assert restored.get_config() == algorithm.get_config()
    # "auto" settings are saved as "auto" and do not depend on the run's length.
    assert keras_ssl.algorithms.get("self_training", steps=3000).refresh_every == "auto"
    auto = keras_ssl.SelfTraining.from_config(keras_ssl.SelfTraining().get_config())
    assert (auto.refresh_every, auto.batchnorm_steps) == ("auto", "auto")
    assert auto.weighting == "threshold"
    assert auto.balance_classes is True
    soft = keras_ssl.SelfTraining(weighting="soft", n_sigma=3.0, balance_classes=False)
    assert keras_ssl.SelfTraining.from_config(soft.get_config()).get_config() == soft.get_config()
    with pytest.raises(ValueError, match=r"threshold=\.\.\.\) must be in \[0, 1\)"):
        keras_ssl.SelfTraining(threshold=1.0)
    for bad in (0, "often", True):
        with pytest.raises(ValueError, match="refresh_every"):
            keras_ssl.SelfTraining(refresh_every=bad)
    with pytest.raises(ValueError, match="batchnorm_steps"):
        keras_ssl.SelfTraining(batchnorm_steps=-1)
    with pytest.raises(ValueError, match="weighting"):
        keras_ssl.SelfTraining(weighting="hard")
    with pytest.raises(ValueError, match="n_sigma"):
        keras_ssl.SelfTraining(n_sigma=0)
    with pytest.raises(ValueError, match="sum to 1"):
        keras_ssl.SelfTraining(class_prior=[0.5, 0.6])
    with pytest.raises(ValueError, match="labeled_view"):
        keras_ssl.SelfTraining(labeled_view="none")
    assert keras_ssl.SelfTraining.from_config(
        keras_ssl.SelfTraining(labeled_view="strong").get_config()).labeled_view == "strong"


@pytest.mark.parametrize("labeled_view", ["weak", "strong"])
def test_labeled_images_get_the_view_asked_for(labeled_view):
    # weak view: images unchanged; strong view: +1000 (Rescaling runs in tf.data on
    # every backend). A model that averages its input sees which one the labeled
    # images went through, in a supervised warm-up fit.
    algorithm = keras_ssl.SelfTraining(labeled_view=labeled_view,
                                       weak=keras.layers.Rescaling(1.0, offset=0.0),
                                       strong=keras.layers.Rescaling(1.0, offset=1000.0))
    x = np.zeros((8, 4, 4, 1), "float32")
    y = np.zeros((8,), "int64")

    class Spy(keras.layers.Layer):
        def call(self, inputs):
            return keras.ops.stack([keras.ops.mean(inputs, axis=(1, 2, 3)),
                                    keras.ops.zeros_like(inputs[:, 0, 0, 0])], axis=-1)

    net = keras.Sequential([keras.Input((4, 4, 1)), Spy(), keras.layers.Dense(2)])
    ssl = keras_ssl.SemiSupervisedModel(net, algorithm, value_range=(0.0, 1.0))
    ssl.compile(optimizer=keras.optimizers.SGD(0.0))
    history = ssl.fit(x, y, batch_size=8, epochs=1, verbose=0)
    loss = history.history["loss"][0]
    # Zero images give zero features, logits equal to the zero bias and a loss of
    # exactly log(2); images shifted by 1000 give logits of +-1000 * weights.
    if labeled_view == "weak":
        assert abs(loss - np.log(2)) < 1e-4, loss
    else:
        assert abs(loss - np.log(2)) > 0.1, loss


# ------------------------------------------------- FixMatch's target pass


def _dense_net():
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(4)])


def _one_step(target_pass, net_fn, u, threshold=0.3):
    x, y, _ = _data()
    keras.utils.set_random_seed(0)
    algorithm = cheap_views(keras_ssl.FixMatch(threshold=threshold))
    ssl = keras_ssl.SemiSupervisedModel(net_fn(), algorithm, unlabeled_ratio=2,
                                        target_pass=target_pass)
    ssl.compile(optimizer=keras.optimizers.SGD(0.1))
    history = ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=2,
                      shuffle=False, verbose=0)
    return [keras.ops.convert_to_numpy(w) for w in ssl.model.weights], history.history


@pytest.mark.parametrize("target_pass", ["batch", "moving"])
def test_a_separate_target_pass_trains_exactly_as_the_joint_one_without_batchnorm(
        target_pass):
    # Without BatchNorm (or dropout) the weak view's logits are the same in
    # either pass and get no gradient in either: the same step, less compute.
    _, _, u = _data()
    u = np.repeat(u[:1], 64, axis=0)  # any shuffle gives the same batches
    joint, joint_logs = _one_step("joint", _dense_net, u)
    separate, logs = _one_step(target_pass, _dense_net, u)
    assert logs["mask_rate"] == joint_logs["mask_rate"]
    assert joint_logs["unsup_loss"][0] > 0
    for a, b in zip(joint, separate):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_target_pass_batchnorm_sees_the_batch_or_the_moving_statistics():
    x, y, u = _data()
    ssl = _model(keras_ssl.FixMatch(threshold=0.5))
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=2, verbose=0)
    images = keras.ops.convert_to_tensor(u[:16])
    stats = [keras.ops.convert_to_numpy(v).copy() for v in ssl.model.non_trainable_variables]

    def restore():
        for variable, value in zip(ssl.model.non_trainable_variables, stats):
            variable.assign(value)

    expected = {"moving": ssl.model(images, training=False)}  # the moving statistics
    expected["batch"] = ssl.model(images, training=True)  # this batch's own statistics
    restore()  # the call in training mode updated the moving statistics
    for target_pass, want in expected.items():
        ssl.target_pass = target_pass
        got = ssl._target_logits({"weak": images}, ("weak",))["weak"]
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got),
                                   keras.ops.convert_to_numpy(want), rtol=1e-4, atol=1e-5)
    assert not np.allclose(keras.ops.convert_to_numpy(expected["batch"]),
                           keras.ops.convert_to_numpy(expected["moving"]))
    # The target pass leaves the moving statistics as they were.
    for variable, value in zip(ssl.model.non_trainable_variables, stats):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)
    with pytest.raises(ValueError, match="target_pass"):
        keras_ssl.SemiSupervisedModel(tiny_cnn(), target_pass="separate")


def test_fixmatch_distribution_alignment_relabels_an_over_predicted_class():
    algorithm = keras_ssl.FixMatch(threshold=0.5, distribution_alignment=True)
    algorithm.build_state(num_classes=3)
    algorithm.marginal.assign(np.array([0.8, 0.1, 0.1], "float32"))
    algorithm.marginal_started.assign(1.0)  # past the first batch: the marginal moves by EMA
    logits = np.log(np.array([[0.5, 0.3, 0.2]], "float32"))
    result = algorithm.unlabeled_loss({"weak": logits, "strong": logits}, {}, 0)
    # m = 0.999 * [0.8, 0.1, 0.1] + 0.001 * [0.5, 0.3, 0.2];
    # 0.5/0.8 : 0.3/0.1 : 0.2/0.1 (about) -> class 1 with confidence ~3 / 5.625 > 0.5.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(result.pseudo_labels), [1])
    assert float(keras.ops.convert_to_numpy(result.metrics["mask_rate"])) == 1.0
    restored = keras_ssl.FixMatch.from_config(algorithm.get_config())
    assert restored.distribution_alignment


def test_ema_weights_and_the_teacher_export_agree_with_batchnorm_recomputed():
    x, y, u = _data()
    ssl = _model(keras_ssl.FixMatch(threshold=0.5), ema_decay=0.9)
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=4, verbose=0)
    before = [keras.ops.convert_to_numpy(v).copy() for v in ssl.model.weights]
    with ssl.ema_weights(batchnorm_data=u, batchnorm_steps=4, batch_size=16):
        inside = keras.ops.convert_to_numpy(ssl.predict(u, verbose=0))
        for variable, average in zip(ssl.teacher_sources, ssl.teacher_weights):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable),
                                          keras.ops.convert_to_numpy(average))
    for a, b in zip(before, ssl.model.weights):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(b))
    exported = ssl.export_model("teacher", batchnorm_data=u, batchnorm_steps=4)
    # 4 batches of 128 from 64 images: a reshuffled cycle, so statistics differ
    # slightly from the 4 x 16 above; the predictions agree closely.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(exported.predict(u, verbose=0)),
                               inside, atol=0.05)
    plain = _model(keras_ssl.FixMatch(), ema_decay=None)
    with pytest.raises(ValueError, match="keeps no EMA"), plain.ema_weights():
        pass


def test_default_is_self_training_for_finite_sources_and_fixmatch_for_endless_streams():
    import tensorflow as tf

    x, y, u = _data()
    # The fallback must keep the model's reported metrics and state valid.
    assert (keras_ssl.algorithms.default().metric_names
            == keras_ssl.algorithms.default(streamed=True).metric_names)

    def fit(ssl, unlabeled=None, data=None):
        args = (data,) if data is not None else (x, y)
        ssl.fit(*args, unlabeled=unlabeled, batch_size=8, epochs=1, steps_per_epoch=2,
                verbose=0)
        return ssl

    def fresh(algorithm=None):
        ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), algorithm, unlabeled_ratio=2)
        ssl.compile(optimizer="adam")
        return ssl

    ssl = fresh()
    assert isinstance(ssl.algorithm, keras_ssl.SelfTraining)
    fit(ssl)  # supervised: nothing to choose
    assert isinstance(ssl.algorithm, keras_ssl.SelfTraining)
    fit(ssl, unlabeled=u)
    assert isinstance(ssl.algorithm, keras_ssl.SelfTraining)
    assert ssl.pseudo_label_table is not None
    # A finite stream: the same default, its images read into the table.
    fit(ssl, unlabeled=tf.data.Dataset.from_tensor_slices(u))
    assert isinstance(ssl.algorithm, keras_ssl.SelfTraining)
    assert len(ssl.pseudo_label_table) == len(u)
    # An endless stream: FixMatch(0.8), a step retraced for it, and a warning.
    endless = tf.data.Dataset.from_tensor_slices(u).repeat().map(lambda image: image)
    with pytest.warns(UserWarning, match="endless stream"):
        history = fit(ssl, unlabeled=endless).history
    assert isinstance(ssl.algorithm, keras_ssl.FixMatch)
    assert ssl.algorithm.threshold == 0.8 and "mask_rate" in history.history
    assert ssl.pseudo_label_table is None
    fit(ssl, unlabeled=u)  # and back
    assert isinstance(ssl.algorithm, keras_ssl.SelfTraining)
    # A zipped labeled+unlabeled dataset: its unlabeled half, under the repeat, fills the table.
    zipped = tf.data.Dataset.zip((tf.data.Dataset.from_tensor_slices((x, y)).batch(8),
                                  tf.data.Dataset.from_tensor_slices(u).repeat().batch(16)))
    assert isinstance(fit(fresh(), data=zipped).algorithm, keras_ssl.SelfTraining)
    # An algorithm the user chose is never replaced.
    chosen = fit(fresh(keras_ssl.SelfTraining(threshold=0.5)), unlabeled=u)
    assert chosen.algorithm.threshold == 0.5
    with pytest.raises(InputError, match="infinite"):
        fit(chosen, unlabeled=endless)
    kept = fit(fresh(keras_ssl.FixMatch(threshold=0.9)), unlabeled=u)
    assert isinstance(kept.algorithm, keras_ssl.FixMatch)


@pytest.mark.parametrize("algorithm", ["self_training", "fixmatch"])
def test_fit_two_phase_keeps_moving_statistics_in_a_table_phase(monkeypatch, algorithm):
    calls = []
    original = keras_ssl.callbacks.BatchNormWarmup.recompute

    def recompute(self, reason="manual"):
        calls.append((id(self), reason))
        return original(self, reason)

    monkeypatch.setattr(keras_ssl.callbacks.BatchNormWarmup, "recompute", recompute)
    x, y, u = _data()
    rng = np.random.default_rng(1)
    validation = (rng.random((16, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 16))
    keras.utils.set_random_seed(0)
    report = keras_ssl.fit_two_phase(
        tiny_cnn(), x, y, u, validation, algorithm=cheap_views(keras_ssl.algorithms.get(
            algorithm, threshold=0.5)),
        unlabeled_ratio=2, steps_per_epoch=2, epochs=6, patience=1, batch_size=8,
        min_delta=100.0,  # no later epoch improves: a switch after 2 epochs
        batchnorm_steps=2, verbose=0)
    assert report.switch_epoch is not None and report.phases[-1] == 2
    first = calls[0][0]
    phase1 = [reason for owner, reason in calls if owner == first]
    assert phase1[0] == "train begin" and "before validation" in phase1
    if algorithm == "self_training":
        # Phase 2 has its own warm-up: at the switch only, never before a
        # validation; no final recomputation when the best weights are its.
        phase2 = [reason for owner, reason in calls if owner != first]
        assert phase2 == ["train begin"]
        assert ("final" in phase1) == (report.best_phase == 1)
    else:
        assert all(owner == first for owner, _ in calls)
        assert phase1.count("train begin") == 2 and phase1[-1] == "final"


if __name__ == "__main__":
    import json

    print("RESULT " + json.dumps(mid_epoch_refresh_scenario()), flush=True)


def test_table_ready_is_the_labeled_accuracy_level_with_a_margin_once_in_use():
    algorithm = keras_ssl.SelfTraining(min_labeled_accuracy=0.8)
    assert not algorithm.table_ready(None, False)  # nothing measured: stays out
    assert algorithm.table_ready(None, True)  # ... or in
    assert not algorithm.table_ready(0.79, False)
    assert algorithm.table_ready(0.8, False)
    assert algorithm.table_ready(0.71, True)  # in use: set aside under 0.8 - 0.1 only
    assert not algorithm.table_ready(0.69, True)
    assert keras_ssl.SelfTraining(min_labeled_accuracy=0).table_ready(None, False)
    with pytest.raises(ValueError, match="min_labeled_accuracy"):
        keras_ssl.SelfTraining(min_labeled_accuracy=1.5)


def test_the_first_table_waits_until_the_model_gets_its_labeled_batches_right():
    x, y, u = _data()
    y = np.arange(16) % 2  # two classes the tiny model learns in a few dozen steps:
    x = 0.5 * x + 0.5 * y[:, None, None, None].astype("float32")  # class 1 is brighter
    ssl = _model(keras_ssl.SelfTraining(min_labeled_accuracy=0.9, refresh_every=1000))
    history = ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=6, steps_per_epoch=20,
                      verbose=0)
    table = ssl.pseudo_label_table
    accuracy = history.history["labeled_accuracy"]
    assert accuracy[0] < 0.9  # the first epoch's batches are not yet right ...
    assert len(table.events) == 1 and table.events[0][1] == "made"
    made_at, _, seen = table.events[0]
    assert made_at > 0 and made_at % keras_ssl.SelfTraining.CHECK_EVERY == 0
    assert seen >= 0.9  # ... the table is made once they are
    assert table.refreshes == 1 and table.refreshed_at_step == made_at
    # Before it, nothing was trained on: the steps' mask rate was 0.
    first = made_at // 20
    assert all(rate == 0.0 for rate in history.history["mask_rate"][:first])


def test_a_model_that_never_fits_its_labeled_images_never_labels_and_says_so():
    x, y, u = _data()  # random labels of random images: never 100 % right in 20 steps
    ssl = _model(keras_ssl.SelfTraining(min_labeled_accuracy=1.0))
    with pytest.warns(UserWarning, match="never made"):
        history = ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=20,
                          verbose=0)
    assert ssl.pseudo_label_table.refreshes == 0
    assert history.history["mask_rate"] == [0.0] and history.history["unsup_loss"] == [0.0]


class _Toggled(keras_ssl.SelfTraining):
    """Ready at the first look with an accuracy, not at the next, ready again after."""

    def table_ready(self, labeled_accuracy, in_use):
        if labeled_accuracy is None:
            return in_use
        self.looks = getattr(self, "looks", 0) + 1
        return self.looks != 2


def test_the_guard_sets_the_table_aside_and_makes_it_again():
    x, y, u = _data()
    ssl = _model(_Toggled(threshold=0.0, refresh_every=1000))
    seen = {}

    class Rows(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen[batch] = self.model.pseudo_label_table.probs.copy()

    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=1, steps_per_epoch=61, verbose=0,
            callbacks=[Rows()])
    table = ssl.pseudo_label_table
    every = keras_ssl.SelfTraining.CHECK_EVERY
    assert [(step, what) for step, what, _ in table.events] == [
        (every, "made"), (2 * every, "set aside"), (3 * every, "made")]
    assert table.refreshes == 2
    np.testing.assert_allclose(seen[2 * every], 0.25)  # set aside: uniform rows
    assert not np.allclose(seen[3 * every], 0.25)
