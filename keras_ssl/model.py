"""`SemiSupervisedModel`: wrapping, `fit(unlabeled=...)` and the SSL step.

The step is written once, in `keras.ops`, by overriding the two portable hooks
that every backend's `train_step` calls: `call` (one concatenated forward
pass of labeled and unlabeled views, so BatchNorm sees one batch) and
`compute_loss` (labeled loss from `compile`, plus the algorithm's unlabeled
loss, plus the EMA-teacher update). Gradients, optimizers, loss scaling and
distribution stay Keras's own.
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_ssl import augment, data, losses, validation
from keras_ssl.algorithms import FixMatch
from keras_ssl.algorithms.base import Algorithm

LABELED = data.LABELED
SSL_METRICS = ("sup_loss", "unsup_loss")


def _ends_with_softmax(model):
    layers = getattr(model, "layers", None)
    if not layers:
        return False
    last = layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", None) == "softmax"


class _Untracked:
    """Holds Python objects that Keras must not track as model state."""

    def __init__(self, **items):
        self.__dict__.update(items)


@keras.saving.register_keras_serializable(package="keras_ssl")
class SemiSupervisedModel(keras.Model):
    """Wraps a Keras classifier to train it with labeled and unlabeled images.

    `fit` takes the usual labeled data plus `unlabeled=` images, zips both
    into one `tf.data` source, augments the views the algorithm asks for, and
    runs a step whose loss is the compiled labeled loss plus the algorithm's
    unlabeled loss. `evaluate` and `predict` behave as the wrapped model does,
    and the wrapped model is trained in place: it stays usable (and savable)
    on its own, with no keras-ssl import needed to load it.

    Example:

    ```python
    model = keras.applications.MobileNet(
        input_shape=(32, 32, 3), weights=None, classes=10,
        classifier_activation=None)
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.FixMatch(),
                                        unlabeled_ratio=7)
    ssl.compile(optimizer="adam",
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
    ssl.fit(x_labeled, y_labeled, unlabeled=x_unlabeled, batch_size=32,
            epochs=10, validation_data=(x_val, y_val))
    ssl.evaluate(x_test, y_test)
    ```

    Without `unlabeled=`, `fit` trains supervised only through the same code
    path (the same labeled augmentation): that is the baseline.

    Args:
        model: any single-output Keras classifier (Sequential, functional,
            subclassed, `keras.applications` with `weights=None`), returning
            logits or class probabilities of shape `(batch, classes)`.
        algorithm: a `keras_ssl.Algorithm`, e.g. `keras_ssl.FixMatch()`
            (default) or `keras_ssl.MeanTeacher()`.
        unlabeled_ratio: integer >= 1; unlabeled images per labeled image in
            a batch. Default 7 (FixMatch's mu).
        value_range: pixel range of the images: `"uint8"`/(0, 255),
            `"unit"`/(0, 1), `"symmetric"`/(-1, 1), or None to infer it from the
            first labeled batch. Augmentation keeps values in this range.
        outputs: `"logits"`, `"probabilities"` or `"auto"` (default: a final
            softmax means probabilities).
        augment_labeled: apply the algorithm's weak view to labeled images
            (default True, as FixMatch does; the supervised baseline gets the
            same augmentation).
        ema_teacher: None, or a dict `{"decay": 0.999, "warmup": True}` to keep
            an EMA teacher of the weights even when the algorithm needs none
            (`keras_ssl.callbacks.EMATeacher` sets this for you).
    """

    def __init__(self, model, algorithm=None, unlabeled_ratio=7, value_range=None,
                 outputs="auto", augment_labeled=True, ema_teacher=None, **kwargs):
        super().__init__(**kwargs)
        validation.check_wrapped_model(model)
        validation.check_unlabeled_ratio(unlabeled_ratio)
        algorithm = FixMatch() if algorithm is None else algorithm
        if not isinstance(algorithm, Algorithm):
            raise TypeError(
                "SemiSupervisedModel(algorithm=...) must be a keras_ssl.Algorithm "
                f"such as keras_ssl.FixMatch(); received {algorithm!r}."
            )
        if outputs not in ("auto", "logits", "probabilities"):
            raise ValueError(
                "SemiSupervisedModel(outputs=...) must be 'auto', 'logits' or "
                f"'probabilities'; received {outputs!r}."
            )
        self.model = model
        self.algorithm = algorithm
        self.unlabeled_ratio = int(unlabeled_ratio)
        self.value_range = (
            None if value_range is None else augment.resolve_value_range(value_range)
        )
        self.outputs = outputs
        self.from_logits = (
            outputs == "logits" or (outputs == "auto" and not _ends_with_softmax(model))
        )
        self.augment_labeled = bool(augment_labeled)
        self.ema_teacher = None
        if algorithm.teacher_decay is not None:
            self.ema_teacher = {"decay": float(algorithm.teacher_decay), "warmup": True}
        if ema_teacher is not None:
            self.ema_teacher = {"decay": 0.999, "warmup": True, **ema_teacher}
        self.teacher_weights = []

        # State read by the compiled step. Variables, not Python attributes,
        # so that callbacks can change them between steps without retracing.
        self.ssl_step = keras.Variable(
            0, dtype="int32", trainable=False, name="ssl_step",
            aggregation="only_first_replica",
        )
        self.unlabeled_loss_scale = keras.Variable(
            1.0, dtype="float32", trainable=False, name="unlabeled_loss_scale",
            aggregation="only_first_replica",
        )
        names = SSL_METRICS + tuple(algorithm.metric_names) + ("pseudo_label_accuracy",)
        # Tracked one by one as attributes; the lookup table stays untracked.
        self._ssl_trackers = _Untracked(table={})
        for name in names:
            tracker = keras.metrics.Mean(name=name)
            setattr(self, f"_tracker_{name}", tracker)
            self._ssl_trackers.table[name] = tracker
        self._reported = set(SSL_METRICS)
        self._augmentations = _Untracked(views=None, labeled_view=None)

    # ------------------------------------------------------------------ build

    def build(self, input_shape=None):
        if not self.model.built:
            if input_shape is None:
                raise ValueError(
                    "Build the wrapped model first, e.g. by calling it on a batch "
                    "or by giving its first layer an input shape."
                )
            if isinstance(input_shape, dict):
                input_shape = input_shape[LABELED]
            self.model.build(input_shape)
        self._build_teacher()
        self.algorithm.build(self)
        self.built = True

    def _build_teacher(self):
        if self.ema_teacher is None or self.teacher_weights:
            return
        self._tracker.unlock()
        self.teacher_weights = [
            keras.Variable(
                ops.copy(v.value), trainable=False, name=f"teacher_{v.name}",
                aggregation="mean",
            )
            for v in self.model.trainable_variables
        ]
        self._tracker.lock()

    def enable_teacher(self, decay=0.999, warmup=True):
        """Keep an EMA teacher of the wrapped model's trainable weights.

        Called by `keras_ssl.callbacks.EMATeacher`; safe to call before or
        after the model is built, but before the first training step.
        """
        self.ema_teacher = {"decay": float(decay), "warmup": bool(warmup)}
        if self.built:
            self._build_teacher()

    # ------------------------------------------------------------ the step

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            return self.model(inputs, training=training)
        names = [LABELED] + [v for v in self.algorithm.views if v in inputs]
        if len(names) == 1:
            return {LABELED: self.model(inputs[LABELED], training=training)}
        parts = [ops.cast(inputs[n], "float32") for n in names]
        outputs = self.model(ops.concatenate(parts, axis=0), training=training)
        result, start = {}, 0
        for name, part in zip(names, parts):
            size = ops.shape(part)[0]
            result[name] = outputs[start:start + size]
            start = start + size
        return result

    def _as_logits(self, outputs):
        outputs = ops.cast(outputs, "float32")
        if self.from_logits:
            return outputs
        return ops.log(ops.clip(outputs, 1e-7, 1.0))

    def _teacher_logits(self, x):
        views = [v for v in self.algorithm.teacher_views if v in x]
        if not views:
            return {}
        parts = [ops.cast(x[v], "float32") for v in views]
        kwargs = {"training": True} if self.model._call_has_training_arg else {}
        outputs, _ = self.model.stateless_call(
            [w.value for w in self.teacher_weights],
            [v.value for v in self.model.non_trainable_variables],
            ops.concatenate(parts, axis=0),
            **kwargs,
        )
        outputs = ops.stop_gradient(self._as_logits(outputs))
        result, start = {}, 0
        for name, part in zip(views, parts):
            size = ops.shape(part)[0]
            result[name] = outputs[start:start + size]
            start = start + size
        return result

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        if not isinstance(y_pred, dict):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        sup_loss = super().compute_loss(
            x, y, y_pred[LABELED], sample_weight, training=training
        )
        loss = sup_loss
        step = self.ssl_step.value
        views = self.algorithm.views
        if views and all(v in y_pred for v in views):
            logits = {v: self._as_logits(y_pred[v]) for v in views}
            teacher_logits = self._teacher_logits(x)
            unsup_loss, metrics, pseudo = self.algorithm.unlabeled_loss(
                logits, teacher_logits, step
            )
            loss = loss + self.unlabeled_loss_scale * ops.cast(unsup_loss, loss.dtype)
            if training:
                self._track("unsup_loss", unsup_loss)
                for name, value in metrics.items():
                    self._track(name, value)
                truth = x.get(data.UNLABELED_LABELS) if isinstance(x, dict) else None
                if truth is not None and pseudo is not None:
                    correct = ops.equal(
                        ops.cast(pseudo, "int32"), ops.cast(truth, "int32")
                    )
                    self._track("pseudo_label_accuracy", ops.cast(correct, "float32"))
        if training:
            self._track("sup_loss", sup_loss)
            self._update_teacher(step)
            self.ssl_step.assign(step + 1)
        return loss

    def _track(self, name, value):
        self._ssl_trackers.table[name].update_state(ops.cast(value, "float32"))

    def _update_teacher(self, step):
        if not self.teacher_weights:
            return
        decay = losses.ema_decay(
            step, self.ema_teacher["decay"], self.ema_teacher["warmup"]
        )
        for average, weight in zip(self.teacher_weights, self.model.trainable_variables):
            average.assign(losses.ema_update(average.value, weight.value, decay))

    @property
    def metrics(self):
        base = super().metrics
        trackers = {id(t): n for n, t in self._ssl_trackers.table.items()}
        return [m for m in base if trackers.get(id(m), None) in (None, *self._reported)]

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict):
            return super().compute_metrics(x, y, y_pred[LABELED], sample_weight)
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        return {k: v for k, v in logs.items() if k not in self._ssl_trackers.table}

    # ------------------------------------------------------------- compile

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """As `keras.Model.compile`; `loss=None` picks sparse cross-entropy.

        The default loss matches the wrapped model's outputs (logits or
        probabilities) and integer labels.
        """
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=self.from_logits)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    # ----------------------------------------------------------------- fit

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto",
            callbacks=None, validation_split=0.0, validation_data=None,
            shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1, unlabeled=None, unlabeled_labels=None):
        """As `keras.Model.fit`, plus unlabeled images.

        Args:
            x, y, sample_weight, class_weight, batch_size, shuffle: the labeled
                data, in any form `keras.Model.fit` takes. `x` may also be
                `tf.data.Dataset.zip((labeled, unlabeled))` of batched
                datasets, with `unlabeled=None`.
            unlabeled: unlabeled images: a numpy array, a `tf.data.Dataset` of
                images (batched or not) or a `keras.utils.PyDataset`. None
                trains supervised only. They are shuffled, repeated and
                batched at `unlabeled_ratio * batch_size`.
            unlabeled_labels: optional ground truth of `unlabeled` (numpy
                array), used only to report `pseudo_label_accuracy`; it never
                reaches the loss.
            validation_split: for array inputs, the last fraction of the
                labeled data is held out, as Keras does.
            Other arguments are passed to `keras.Model.fit` unchanged; an
            epoch is one pass over the labeled data unless `steps_per_epoch`
            is given (the labeled data then repeats as needed).

        Returns:
            A `keras.callbacks.History`.
        """
        if validation_split and validation_data is None:
            (x, y, sample_weight), validation_data = _split_for_validation(
                x, y, sample_weight, validation_split
            )
        dataset = self.make_train_dataset(
            x, y, sample_weight=sample_weight, batch_size=batch_size,
            unlabeled=unlabeled, unlabeled_labels=unlabeled_labels,
            shuffle=shuffle, class_weight=class_weight, steps_per_epoch=steps_per_epoch,
        )
        return super().fit(
            dataset, epochs=epochs, verbose=verbose, callbacks=callbacks,
            validation_data=validation_data, initial_epoch=initial_epoch, shuffle=False,
            steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
            validation_batch_size=validation_batch_size, validation_freq=validation_freq,
        )

    def make_train_dataset(self, x, y=None, sample_weight=None, batch_size=None,
                           unlabeled=None, unlabeled_labels=None, shuffle=True,
                           class_weight=None, steps_per_epoch=None):
        """Check the inputs and build the zipped, augmented `tf.data` source.

        Also builds the model's state (wrapped model, teacher) so that every
        check runs before the first training step.
        """
        validation.check_fit_arguments(self, x, y, unlabeled, unlabeled_labels)
        if batch_size is None and not data.is_zipped(x):
            batch_size = 32
        zipped = data.is_zipped(x)
        if zipped and unlabeled is not None:
            raise ValueError(
                "fit() received a zipped (labeled, unlabeled) dataset as `x` and "
                "also `unlabeled=`. Pass the unlabeled images one way only."
            )
        if zipped:
            labeled = x.map(lambda lab, unl: lab)
        else:
            validation.check_labeled_arrays(x, y, batch_size)
            labeled = data.labeled_dataset(
                x, y, sample_weight, batch_size, shuffle, class_weight, steps_per_epoch
            )
        first = next(iter(labeled.take(1)))
        x_sample, rest = data._split(first)
        x_sample = np.asarray(x_sample)
        y_sample = np.asarray(rest[0]) if rest else None
        validation.check_images(x_sample, "x (labeled images)")
        if self.value_range is None:
            self.value_range = data.infer_value_range(x_sample)
        validation.check_value_range(x_sample, self.value_range, "x (labeled images)")
        self._ensure_built(x_sample)
        validation.check_outputs(self, x_sample, y_sample, labels=None if zipped else y)

        views = self.algorithm.build_views(self.value_range)
        needed = tuple(self.algorithm.views) + tuple(self.algorithm.teacher_views)
        views = {name: views[name] for name in needed}
        labeled_view = views[needed[0]] if (self.augment_labeled and needed) else None
        self._augmentations = _Untracked(views=views, labeled_view=labeled_view)

        if zipped:
            validation.check_zipped_unlabeled(x, x_sample, self.value_range)
            source = x
        elif unlabeled is not None:
            u_batch = self.unlabeled_ratio * int(x_sample.shape[0])
            validation.check_unlabeled(
                unlabeled, x_sample, self.value_range, labels=unlabeled_labels,
                unlabeled_batch=u_batch,
            )
            stream = data.unlabeled_dataset(
                unlabeled, u_batch, x_sample.ndim, labels=unlabeled_labels
            )
            source = keras_zip(labeled, stream)
        else:
            source = labeled
        has_unlabeled = zipped or unlabeled is not None
        self._reported = set(SSL_METRICS)
        if has_unlabeled:
            self._reported |= set(self.algorithm.metric_names)
            if unlabeled_labels is not None:
                self._reported.add("pseudo_label_accuracy")
        return data.attach_views(source, views, labeled_view, zipped=has_unlabeled)

    def _ensure_built(self, x_sample):
        if not self.model.built:
            self.model(x_sample[:1])
        if not self.built:
            self.build(x_sample.shape)
        else:
            self._build_teacher()

    # -------------------------------------------------------------- saving

    def export_model(self, which="student"):
        """A plain Keras copy of the wrapped model, for inference or deployment.

        The copy is made of the wrapped model's own layers only, so
        `copy.save("classifier.keras")` loads back with
        `keras.models.load_model` without importing keras-ssl.

        Example:

        ```python
        ssl.fit(x, y, unlabeled=u, epochs=10)
        ssl.export_model("teacher").save("classifier.keras")
        ```

        Args:
            which: `"student"` (the trained weights) or `"teacher"` (the EMA
                teacher's weights; needs an algorithm with a teacher, such as
                `MeanTeacher`, or `ema_teacher=`).

        Returns:
            A new, uncompiled `keras.Model` with a snapshot of those weights;
            later training does not change it.
        """
        if which not in ("student", "teacher"):
            raise ValueError(
                f"export_model(which=...) must be 'student' or 'teacher'; "
                f"received {which!r}."
            )
        if which == "teacher" and not self.teacher_weights:
            raise ValueError(
                "export_model(which='teacher'): this model keeps no EMA teacher. "
                "Use an algorithm with a teacher (MeanTeacher) or "
                "SemiSupervisedModel(..., ema_teacher={'decay': 0.999}), or "
                "export which='student'."
            )
        copy = keras.models.clone_model(self.model)
        if not copy.built:
            raise ValueError(
                f"export_model: the copy of {self.model.name!r} could not be "
                "rebuilt from its config; save the wrapped model directly "
                "(ssl.model.save(...))."
            )
        copy.set_weights(self.model.get_weights())
        if which == "teacher":
            for variable, average in zip(copy.trainable_variables, self.teacher_weights):
                variable.assign(average.value)
        return copy

    def compile_from_config(self, config):
        # `compile` is overridden (only to default the loss), so Keras's own
        # `compile_from_config` would skip it and load an uncompiled model.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        return {
            "name": self.name,
            "model": keras.saving.serialize_keras_object(self.model),
            "algorithm": keras.saving.serialize_keras_object(self.algorithm),
            "unlabeled_ratio": self.unlabeled_ratio,
            "value_range": None if self.value_range is None else list(self.value_range),
            "outputs": self.outputs,
            "augment_labeled": self.augment_labeled,
            "ema_teacher": self.ema_teacher,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(
            config["model"], custom_objects=custom_objects
        )
        config["algorithm"] = keras.saving.deserialize_keras_object(
            config["algorithm"], custom_objects=custom_objects
        )
        return cls(**config)

    def get_build_config(self):
        return {"input_shape": tuple(self.model.inputs[0].shape)
                if getattr(self.model, "inputs", None) else None,
                "built": self.built}

    def build_from_config(self, config):
        shape = config.get("input_shape")
        self.build(shape)


def keras_zip(labeled, unlabeled):
    import tensorflow as tf

    return tf.data.Dataset.zip((labeled, unlabeled))


def _split_for_validation(x, y, sample_weight, validation_split):
    from keras.src.trainers.data_adapters import data_adapter_utils

    if not all(isinstance(a, np.ndarray) or a is None for a in (x, y, sample_weight)):
        raise ValueError(
            "fit(validation_split=...) is only supported for numpy array inputs; "
            "pass validation_data=(x_val, y_val) instead."
        )
    warnings.filterwarnings("ignore", message=".*validation_split.*")
    (x, y, sample_weight), val = data_adapter_utils.train_validation_split(
        (x, y, sample_weight), validation_split=validation_split
    )
    return (x, y, sample_weight), val
