"""Every access to private Keras / tf.distribute API, each with its reason.

Checked against Keras 3.15.1 and TensorFlow 2.21. When Keras changes one of
these, this file is the only place to mend. One private hook is overridden
rather than called: `SemiSupervisedModel._maybe_symbolic_build` (model.py),
because under MultiWorkerMirroredStrategy Keras builds from a batch reduced
with `strategy.reduce("MEAN")`, which fails for a dict batch; it builds from
one replica's batch instead.
"""

import keras


def get_data_adapter(*args, **kwargs):
    """Keras's own input adapters (arrays, tf.data, PyDataset, generators).

    Reason: batching, shuffling and class weights exactly as `Model.fit`
    does them, for the labeled half of the zipped source.
    """
    from keras.src.trainers.data_adapters import get_data_adapter as adapter

    return adapter(*args, **kwargs)


def scale_loss_for_distribution(value):
    """`value / replicas` under tf.distribute, as Keras scales its own losses.

    Reason: the unlabeled loss is added to Keras's compiled loss, which is
    already this replica's share.
    """
    from keras.src.losses.loss import scale_loss_for_distribution as scale

    return scale(value)


def unscale_loss_for_distribution(value):
    """Undo `scale_loss_for_distribution` (the per-replica mean, for logs)."""
    from keras.src.losses.loss import unscale_loss_for_distribution as unscale

    return unscale(value)


def in_tf_graph():
    """Whether the code runs inside a TensorFlow graph (a tf.data map).

    Reason: `PerImageRandAugment` takes its cheaper, dynamic-shape path there.
    """
    from keras.src.utils import backend_utils

    return backend_utils.in_tf_graph()


def call_has_training_arg(model):
    """Whether `model.call` takes `training` (for `stateless_call`)."""
    return model._call_has_training_arg


def flatten_layers(layer, include_self=True):
    """Every sublayer of `layer`, recursively (Keras's own traversal)."""
    return layer._flatten_layers(include_self=include_self, recursive=True)


def track_variables(model, name, variables):
    """Set a list of variables as a tracked attribute after `build`.

    Reason: Keras locks attribute tracking once a model is built; state that
    an algorithm or the teacher creates later must still be saved with it.
    """
    model._tracker.unlock()
    setattr(model, name, variables)
    model._tracker.lock()


def replace_variable(model, old, new):
    """Put variable `new` where the model tracks `old` (same place in its weights).

    Reason: Keras saves a model's own variables by position; per-image state
    resized for a new unlabeled set must keep its place, not leave the old
    variable behind.
    """
    # Keras's `Tracker.replace_tracked_value` finds `old` with `==`, which
    # compares variables element-wise; find it by identity instead.
    tracker = model._tracker
    store = tracker.config["non_trainable_variables"][1]
    position = next(i for i, v in enumerate(store) if v is old)
    store[position] = new
    ids = tracker.stored_ids["non_trainable_variables"]
    ids.discard(id(old))
    ids.add(id(new))


def distribute_strategy(model):
    """The tf.distribute strategy a model was built under, or None."""
    return getattr(model, "_distribute_strategy", None)


def in_multi_worker_mode(strategy):
    """Whether a MultiWorkerMirroredStrategy really spans several workers."""
    return strategy.extended._in_multi_worker_mode()


def print_msg(message):
    """Keras's own printing (respects its io settings, e.g. absl logging)."""
    from keras.src.utils.io_utils import print_msg as keras_print

    keras_print(message)


def monitor_callback_base():
    """`keras.src.callbacks.monitor_callback.MonitorCallback`: the plateau logic
    that EarlyStopping and ReduceLROnPlateau share (monitor, mode, min_delta,
    baseline), not exported by Keras."""
    from keras.src.callbacks.monitor_callback import MonitorCallback

    return MonitorCallback


def designed_trainable_variables(model):
    """The variables a model trains when nothing is frozen, in `model.variables` order.

    Reason: `model.trainable_variables` shrinks when layers are frozen
    (`layer.trainable = False` also flips each variable's `trainable`), so
    a list built from it at one time cannot be paired with it at another.
    Each layer's private `_trainable_variables` keeps the variables created
    trainable, frozen or not. Checked against Keras 3.15.1.
    """
    designed = set()
    for layer in flatten_layers(model):
        designed.update(id(v) for v in getattr(layer, "_trainable_variables", []))
    return [v for v in model.variables if id(v) in designed]


def live_trainable_values(model):
    """The current values of a model's trainable variables, also mid-epoch on JAX.

    Reason: on JAX, `fit` purges the variables during an epoch and keeps the
    live values in `model._jax_state` (the hook Keras documents for callbacks).
    """
    state = getattr(model, "_jax_state", None)
    if state and not getattr(model, "_jax_state_synced", True):
        return state["trainable_variables"]
    return [v.value for v in model.trainable_variables]


def seed_generator(layer):
    """A preprocessing layer's seed generator for its current backend.

    Reason: `PerImageRandAugment` draws per-image choices from the parent
    `RandAugment`'s own seed state, so that seeding and saving stay Keras's.
    """
    return layer._get_seed_generator(layer.backend._backend)


__all__ = [name for name in dir() if not name.startswith("_") and name != "keras"]
del keras
