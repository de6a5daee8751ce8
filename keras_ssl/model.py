"""`SemiSupervisedModel`: wrapping, `fit(unlabeled=...)` and the SSL step.

The step is written once, in `keras.ops`, by overriding the two portable hooks
that every backend's `train_step` calls: `call` (one concatenated forward
pass of labeled and unlabeled views, so BatchNorm sees one batch) and
`compute_loss` (labeled loss from `compile`, plus the algorithm's unlabeled
loss, plus the EMA-teacher update). Gradients, optimizers, loss scaling and
distribution stay Keras's own.
"""

import contextlib
import functools
import types
import warnings

import keras
import numpy as np
from keras import ops

from keras_ssl import _compat, algorithms, augment, checks, data, losses
from keras_ssl.algorithms.base import Algorithm, as_unlabeled_loss
from keras_ssl.pseudo_table import PseudoLabelTable, TableRefresh

LABELED = augment.LABELED
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


def _split_rows(outputs, names, parts):
    """Undo a concatenation: `{name: rows of outputs}` in the order of `parts`."""
    result, start = {}, 0
    for name, part in zip(names, parts):
        size = ops.shape(part)[0]
        result[name] = outputs[start:start + size]
        start = start + size
    return result


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
    ssl = keras_ssl.SemiSupervisedModel(model, unlabeled_ratio=3)  # the default
    ssl.compile(optimizer="adam", metrics=["accuracy"])  # loss: cross-entropy
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
        algorithm: a `keras_ssl.Algorithm`, e.g. `keras_ssl.FixMatch()`,
            `keras_ssl.FreeMatch()` or `keras_ssl.MeanTeacher()`. Default
            None: `keras_ssl.SelfTraining()` whenever the unlabeled images
            are finite (an array, or a dataset, `PyDataset`, generator or
            folder that `fit` reads into memory once),
            `keras_ssl.FixMatch(threshold=0.8)` for an endless stream or
            one over `unlabeled_memory_gb`, chosen at each `fit`;
            `ssl.algorithm` is the one in use and `ssl.algorithm_reason`
            says why (docs/experiments.md has the measurements behind the choice).
            Self-training labels with the model itself, so its first table
            waits until the model gets most of its labeled batches right
            (`SelfTraining(min_labeled_accuracy=0.6)`). Any name of
            `keras_ssl.algorithms.names()` works through
            `keras_ssl.algorithms.get(name)`.
        unlabeled_ratio: integer >= 1; unlabeled images per labeled image in
            a batch. Default 7 (FixMatch's mu).
        value_range: pixel range of the images: `"uint8"`/(0, 255),
            `"unit"`/(0, 1), `"symmetric"`/(-1, 1), a `(low, high)` pair, or
            None (default) to infer it from the labeled images where they
            clearly are one of the three. A declared range is checked against
            the data. Images in any other range (standardized,
            `preprocess_input`-ed) are refused when the views need a range
            (FixMatch's strong view); put the normalization inside the model
            and pass raw pixels. The range a model trained with stays: a
            later `fit` on another range is refused.
        outputs: `"logits"`, `"probabilities"` or `"auto"` (default: a final
            softmax means probabilities).
        augment_labeled: apply the algorithm's weak view to labeled images
            (default True, as FixMatch does; the supervised baseline gets the
            same augmentation).
        ema_teacher: deprecated; use `ema_decay` and `ema_warmup`.
        augment_on_device: False (default) makes the views in the `tf.data`
            pipeline, on the CPU. True makes them inside the training step,
            on the accelerator (JAX, PyTorch, TensorFlow without XLA): the
            source then carries raw batches, and the view layers become
            tracked model state. This is also the path without TensorFlow
            installed (numpy arrays only). See docs/scale.md.
        ema_decay: the model keeps an exponential moving average (EMA) of the
            wrapped model's trainable weights, updated in every training step:
            the teacher of algorithms that need one (Mean Teacher) and the
            weights `keras_ssl.callbacks.EMATeacher` evaluates with. It is
            model state, saved in every checkpoint whatever the callbacks.
            `"auto"` (default): 0.999. A float in [0, 1), or None to keep no
            EMA (algorithms with a teacher need one).
        ema_warmup: use the decay warm-up `min(decay, (1 + t) / (10 + t))`
            at step `t`. Default True.
        target_pass: how views that only make targets (the algorithm's
            `target_views`, e.g. FixMatch's weak view) go through the model.
            `"joint"` (default): in the one concatenated forward and backward
            pass with the other views (FixMatch's original; BatchNorm
            normalizes them together). `"moving"`: a second forward pass
            without a backward pass, in inference mode (BatchNorm's moving
            statistics): 28 % less time per FixMatch step on the CPU
            protocol. `"batch"`: the same pass with BatchNorm normalizing by
            that view's own batch statistics (its moving statistics are not
            updated). On a 1,000-step CIFAR-10 proxy (one seed) "moving" lost
            1.5 points and "batch" 6.8 against "joint" (docs/experiments.md), hence
            the default. With `augment_on_device=True` the pass is joint.
    """

    def __init__(self, model, algorithm=None, unlabeled_ratio=7, value_range=None,
                 outputs="auto", augment_labeled=True, ema_teacher=None,
                 augment_on_device=False, ema_decay="auto", ema_warmup=True,
                 target_pass="joint", unlabeled_memory_gb=data.DEFAULT_MEMORY_GB, **kwargs):
        super().__init__(**kwargs)
        checks.check_wrapped_model(model)
        checks.check_unlabeled_ratio(unlabeled_ratio)
        # algorithm=None: the library's default, chosen again at each `fit`
        # from how the unlabeled images come (`_choose_default_algorithm`).
        self._default_algorithm = algorithm is None
        algorithm = algorithms.default() if algorithm is None else algorithm
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
        self.output_mode = outputs
        self.from_logits = (
            outputs == "logits" or (outputs == "auto" and not _ends_with_softmax(model))
        )
        self.augment_labeled = bool(augment_labeled)
        if target_pass not in ("batch", "moving", "joint"):
            raise ValueError(
                "SemiSupervisedModel(target_pass=...) must be 'batch', 'moving' or "
                f"'joint'; received {target_pass!r}."
            )
        self.target_pass = target_pass
        self.ema_decay, self.ema_warmup = _resolve_ema(
            ema_decay, ema_warmup, ema_teacher, algorithm
        )
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
        names = SSL_METRICS + tuple(algorithm.metric_names) + (
            "pseudo_label_accuracy", "labeled_accuracy")
        # Tracked one by one as attributes; the lookup table stays untracked.
        self._ssl_trackers = _Untracked(table={})
        for name in names:
            tracker = keras.metrics.Mean(name=name)
            setattr(self, f"_tracker_{name}", tracker)
            self._ssl_trackers.table[name] = tracker
        self._reported = set(SSL_METRICS)
        self._augmentations = _Untracked(views=None, labeled_view=None)
        if not isinstance(augment_on_device, bool):
            raise TypeError(
                "SemiSupervisedModel(augment_on_device=...) must be True or False; "
                f"received {augment_on_device!r}."
            )
        # True: the views are made inside the training step (on the
        # accelerator) by layers the model tracks, so that their random seed
        # state is model state (updated every step, also under jax.jit).
        self.augment_on_device = augment_on_device
        self._jit_requested = "auto"
        if isinstance(unlabeled_memory_gb, bool) or not float(unlabeled_memory_gb) > 0:
            raise ValueError(
                "SemiSupervisedModel(unlabeled_memory_gb=...) must be > 0 (GiB); "
                f"received {unlabeled_memory_gb!r}."
            )
        self.unlabeled_memory_gb = float(unlabeled_memory_gb)
        # Why the algorithm is the one it is (set at each fit with unlabeled
        # images), and the last unlabeled source read into an ImageStore.
        self.algorithm_reason = None if self._default_algorithm else "given to SemiSupervisedModel"
        self._stores = _Untracked(source=None, store=None)

    # ------------------------------------------------------------------ build

    def build(self, input_shape=None):
        if isinstance(input_shape, dict):
            input_shape = input_shape[LABELED]
        if not self.model.built:
            if input_shape is None:
                raise ValueError(
                    "Build the wrapped model first, e.g. by calling it on a batch "
                    "or by giving its first layer an input shape."
                )
            self.model.build(input_shape)
        self._build_teacher()
        self._build_algorithm_state(input_shape)
        self.built = True

    def _build_algorithm_state(self, input_shape=None):
        """Let the algorithm create its variables; the model tracks them."""
        if getattr(self, "algorithm_variables", None):
            return
        if getattr(self.model, "inputs", None):
            input_shape = self.model.inputs[0].shape
        num_classes = None
        if input_shape is not None:
            spec = self.model.compute_output_spec(
                keras.KerasTensor((1,) + tuple(input_shape[1:]))
            )
            num_classes = int(spec.shape[-1])
        variables = list(self.algorithm.build_state(num_classes) or [])
        if variables:
            _compat.track_variables(self, "algorithm_variables", variables)

    @property
    def teacher_sources(self):
        """The wrapped model's variables the EMA averages, paired with `teacher_weights`.

        Every variable the model trains when nothing is frozen, frozen or not,
        so that freezing or unfreezing layers between `fit`s (a frozen
        backbone first, then fine-tuning) never changes the pairing.
        """
        return _compat.designed_trainable_variables(self.model)

    def _build_teacher(self):
        if self.ema_decay is None or self.teacher_weights:
            return
        _compat.track_variables(self, "teacher_weights", [
            keras.Variable(
                ops.copy(v.value), trainable=False, name=f"teacher_{v.name}",
                aggregation="mean",
            )
            for v in self.teacher_sources
        ])

    def _teacher_values_for_trainable(self):
        """The EMA values in `model.trainable_variables` order (for `stateless_call`)."""
        average = {id(v): a for v, a in zip(self.teacher_sources, self.teacher_weights)}
        return [average[id(v)].value for v in self.model.trainable_variables]

    def enable_teacher(self, decay=0.999, warmup=True):
        """Deprecated: pass `SemiSupervisedModel(ema_decay=..., ema_warmup=...)`.

        Sets the decay of the model's EMA; on a model built with
        `ema_decay=None` it creates the EMA variables, which changes what its
        checkpoints hold.
        """
        warnings.warn(
            "SemiSupervisedModel.enable_teacher() is deprecated: the model owns its EMA "
            "teacher; pass SemiSupervisedModel(..., ema_decay=...).",
            FutureWarning,
            stacklevel=2,
        )
        self.ema_decay = checks.check_ema_decay(decay, "enable_teacher(decay=...)")
        self.ema_warmup = bool(warmup)
        if self.built:
            self._build_teacher()
        self.train_function = None

    # ------------------------------------------------------------ the step

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            return self.model(inputs, training=training)
        if training and self.augment_on_device:
            inputs = self._augment_in_step(inputs, self.algorithm.views, labeled=True)
        separate = self._separate_target_views() if training else ()
        names = [LABELED] + [
            v for v in self.algorithm.views if v in inputs and v not in separate
        ]
        if len(names) == 1:
            return {LABELED: self.model(inputs[LABELED], training=training)}
        parts = [ops.cast(inputs[n], "float32") for n in names]
        outputs = self.model(ops.concatenate(parts, axis=0), training=training)
        return _split_rows(outputs, names, parts)

    def _separate_target_views(self):
        """The target-only views that get their own forward pass (no backward)."""
        if self.target_pass == "joint" or self.augment_on_device:
            return ()
        return tuple(v for v in getattr(self.algorithm, "target_views", ())
                     if v in self.algorithm.views)

    def _target_logits(self, x, names):
        """Logits of the student on target-only views: forward only, no gradient."""
        parts = [ops.cast(x[v], "float32") for v in names]
        kwargs = {}
        if _compat.call_has_training_arg(self.model):
            kwargs["training"] = self.target_pass == "batch"
        outputs, _ = self.model.stateless_call(
            [w.value for w in self.model.trainable_variables],
            [v.value for v in self.model.non_trainable_variables],
            ops.concatenate(parts, axis=0),
            **kwargs,
        )  # the updated BatchNorm statistics are dropped
        outputs = ops.stop_gradient(self._as_logits(outputs))
        return _split_rows(outputs, names, parts)

    def _as_logits(self, outputs):
        outputs = ops.cast(outputs, "float32")
        if self.from_logits:
            return outputs
        return ops.log(ops.clip(outputs, 1e-7, 1.0))

    def _augment_in_step(self, inputs, names, labeled=False):
        """`inputs` plus the named views of its raw unlabeled batch, made here.

        Only with `augment_on_device=True`, where the source yields
        `{"labeled": x, "unlabeled": u}`. Every call draws new randomness: the
        views' seed state is model state.
        """
        views, labeled_view = self._augmentations.views, self._augmentations.labeled_view
        if views is None:
            return inputs
        result = dict(inputs)
        if labeled and labeled_view is not None:
            result[LABELED] = labeled_view(ops.cast(inputs[LABELED], "float32"),
                                           training=True)
        if augment.UNLABELED in inputs:
            images = ops.cast(inputs[augment.UNLABELED], "float32")
            for name in names:
                if name not in result:
                    result[name] = views[name](images, training=True)
        return result

    def _teacher_logits(self, x, training=True):
        if training and self.augment_on_device and isinstance(x, dict):
            x = self._augment_in_step(x, self.algorithm.teacher_views)
        views = [v for v in self.algorithm.teacher_views if v in x]
        if not views:
            return {}
        parts = [ops.cast(x[v], "float32") for v in views]
        kwargs = {"training": True} if _compat.call_has_training_arg(self.model) else {}
        outputs, _ = self.model.stateless_call(
            self._teacher_values_for_trainable(),
            [v.value for v in self.model.non_trainable_variables],
            ops.concatenate(parts, axis=0),
            **kwargs,
        )
        outputs = ops.stop_gradient(self._as_logits(outputs))
        return _split_rows(outputs, views, parts)

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
        separate = self._separate_target_views() if training else ()
        if separate and not (isinstance(x, dict) and all(v in x for v in separate)):
            separate = ()
        if views and all(v in y_pred or v in separate for v in views):
            logits = {v: self._as_logits(y_pred[v]) for v in views if v in y_pred}
            if separate:
                logits.update(self._target_logits(x, separate))
            teacher_logits = self._teacher_logits(x)
            if isinstance(x, dict) and augment.UNLABELED_TARGETS in x:
                table = ops.clip(ops.cast(x[augment.UNLABELED_TARGETS], "float32"), 1e-7, 1.0)
                teacher_logits = {**teacher_logits, "table": ops.log(table)}
            extra = {}
            if getattr(self.algorithm, "uses_index", False):
                index = x.get(augment.UNLABELED_INDEX) if isinstance(x, dict) else None
                extra["index"] = index
            unsup_loss, metrics, pseudo = as_unlabeled_loss(
                self.algorithm.unlabeled_loss(logits, teacher_logits, step, **extra)
            )
            # Like the compiled loss, the unlabeled loss is this replica's
            # share under tf.distribute: the replicas' gradients are summed.
            loss = loss + self.unlabeled_loss_scale * ops.cast(
                _replica_share(unsup_loss), loss.dtype
            )
            if training:
                self._track("unsup_loss", unsup_loss)
                for name, value in metrics.items():
                    self._track(name, value)
                truth = x.get(augment.UNLABELED_LABELS) if isinstance(x, dict) else None
                if truth is not None and pseudo is not None:
                    correct = ops.equal(
                        ops.cast(pseudo, "int32"), ops.cast(truth, "int32")
                    )
                    self._track("pseudo_label_accuracy", ops.cast(correct, "float32"))
        if training and "labeled_accuracy" in self._reported:
            self._track("labeled_accuracy", _correct(y, self._as_logits(y_pred[LABELED])))
        if training:
            # Keras scales the compiled loss by 1 / replicas under
            # tf.distribute; report the per-replica mean, as its "loss" does.
            self._track("sup_loss", _replica_total(sup_loss))
            self._update_teacher(step)
            self.ssl_step.assign(step + 1)
        return loss

    def _track(self, name, value):
        self._ssl_trackers.table[name].update_state(ops.cast(value, "float32"))

    def _update_teacher(self, step):
        if not self.teacher_weights:
            return
        decay = losses.ema_decay(
            step, self.ema_decay, self.ema_warmup
        )
        for average, weight in zip(self.teacher_weights, self.teacher_sources):
            average.assign(losses.ema_update(average.value, weight.value, decay))

    @property
    def metrics(self):
        base = super().metrics
        trackers = {id(t): n for n, t in self._ssl_trackers.table.items()}
        return [m for m in base if trackers.get(id(m), None) in (None, *self._reported)]

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict):
            logs = super().compute_metrics(x, y, y_pred[LABELED], sample_weight)
            return _for_multi_worker(self, logs)
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        logs = {k: v for k, v in logs.items() if k not in self._ssl_trackers.table}
        return _for_multi_worker(self, logs)

    # ------------------------------------------------------------- compile

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """As `keras.Model.compile`; `loss=None` picks the cross-entropy.

        The default loss, `keras_ssl.losses.ClassificationCrossentropy`,
        matches the wrapped model's outputs (logits or probabilities) and
        takes integer, one-hot or soft labels.
        """
        if loss is None:
            loss = losses.ClassificationCrossentropy(from_logits=self.from_logits)
        self._jit_requested = kwargs.get("jit_compile", "auto")
        if self._jit_requested is True:
            self._check_jit_with_device_views()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def _check_jit_with_device_views(self):
        if self.augment_on_device and keras.backend.backend() == "tensorflow":
            raise ValueError(
                "SemiSupervisedModel(augment_on_device=True) cannot run with "
                "compile(jit_compile=True) on TensorFlow: Keras's RandAugment, "
                "RandomTranslation and RandomCrop do not compile with XLA. Either "
                "keep the augmentation in the tf.data pipeline "
                "(augment_on_device=False, the default) with jit_compile=True, or "
                "use augment_on_device=True with jit_compile=False (or 'auto'). "
                "Under JAX both work together."
            )

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (TensorFlow, under a strategy) builds from the first batch
        # reduced with strategy.reduce("MEAN"), which MultiWorkerMirroredStrategy
        # cannot do for a nested (dict) batch such as ours. One replica's batch
        # has all the build needs (its shapes and dtypes).
        strategy = _compat.distribute_strategy(self)
        if keras.backend.backend() == "tensorflow" and strategy and iterator is not None:
            import tensorflow as tf

            def local(value):
                if isinstance(value, tf.distribute.DistributedValues):
                    return strategy.experimental_local_results(value)[0]
                return value

            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(local, next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # ----------------------------------------------------------------- fit

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto",
            callbacks=None, validation_split=0.0, validation_data=None,
            shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1, unlabeled=None, unlabeled_labels=None):
        """As `keras.Model.fit`, plus unlabeled images.

        Everything is read and checked before the first step (and before any
        keras-ssl state of the model changes): a case keras-ssl cannot train
        on raises `keras_ssl.InputError` (docs/bad_inputs.md).

        Args:
            x, y, sample_weight, class_weight, batch_size, shuffle: the labeled
                data: numpy arrays, a `tf.data.Dataset` of `(images, labels[,
                sample_weights])` batches (e.g. from
                `keras.utils.image_dataset_from_directory`), a
                `keras.utils.PyDataset` or a Python generator of such batches.
                Labels are class indices, or one-hot / soft labels of shape
                `(batch, classes)`. `x` may also be
                `tf.data.Dataset.zip((labeled, unlabeled))` of batched
                datasets, with `unlabeled=None`.
            unlabeled: unlabeled images in the same pixel range as `x`: a
                numpy array, a `tf.data.Dataset` of images (batched or not,
                e.g. `image_dataset_from_directory(..., labels=None)`), a
                `keras.utils.PyDataset` or a generator of image batches. None
                trains supervised only. They are shuffled, repeated and
                batched at `unlabeled_ratio * batch_size`.
            unlabeled_labels: optional ground truth of `unlabeled` (numpy
                array), used only to report `pseudo_label_accuracy`; it never
                reaches the loss.
            validation_split: for array inputs, the last fraction of the
                labeled arrays is held out (before shuffling), as Keras does.
            validation_data: `(x_val, y_val)`, a dataset or a `PyDataset`;
                checked like the training data (shape, range, labels).
            **kwargs: the other arguments of `keras.Model.fit`, passed on
                unchanged. An epoch is one pass over the labeled data unless
                `steps_per_epoch` is given (the labeled data then repeats as
                needed).

        Returns:
            A `keras.callbacks.History`.
        """
        inputs = self._read(
            x, y, sample_weight=sample_weight, batch_size=batch_size,
            unlabeled=unlabeled, unlabeled_labels=unlabeled_labels, shuffle=shuffle,
            class_weight=class_weight, steps_per_epoch=steps_per_epoch, epochs=epochs,
            initial_epoch=initial_epoch, validation_split=validation_split,
            validation_data=validation_data, validation_steps=validation_steps,
            validation_freq=validation_freq, verbose=1 if verbose == "auto" else verbose,
        )
        dataset = self._prepare(inputs)
        callbacks = list(callbacks or [])
        if self.pseudo_label_table is not None:
            # First: the other callbacks see the fresh table.
            table = self.pseudo_label_table
            every = functools.partial(self.algorithm.refresh_interval, len(table),
                                      len(inputs.x_sample) + inputs.unlabeled_batch)
            callbacks.insert(0, TableRefresh(
                table, every, ready=getattr(self.algorithm, "table_ready", None),
                check_every=getattr(self.algorithm, "CHECK_EVERY", 20),
                report=bool(verbose)))
        if inputs.guard is not None:
            callbacks.append(data.SkipReport(inputs.guard))
        return super().fit(
            dataset, epochs=epochs, verbose=verbose, callbacks=callbacks,
            validation_data=inputs.validation_data, initial_epoch=initial_epoch,
            shuffle=False, steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            validation_batch_size=validation_batch_size, validation_freq=validation_freq,
        )

    def make_train_dataset(self, x, y=None, sample_weight=None, batch_size=None,
                           unlabeled=None, unlabeled_labels=None, shuffle=True,
                           class_weight=None, steps_per_epoch=None):
        """Read and check the inputs, prepare the model, return the training source.

        What `fit` does before `keras.Model.fit`, for code that drives
        training itself (benchmarks, custom loops): the zipped, augmented
        `tf.data` source of `({"labeled": x, view: ...}, y[, sample_weight])`
        batches; with `augment_on_device=True` it carries raw batches, and
        without TensorFlow it is a `data.ArraySource` over numpy arrays.
        """
        inputs = self._read(
            x, y, sample_weight=sample_weight, batch_size=batch_size,
            unlabeled=unlabeled, unlabeled_labels=unlabeled_labels, shuffle=shuffle,
            class_weight=class_weight, steps_per_epoch=steps_per_epoch,
        )
        return self._prepare(inputs)

    def _choose_default_algorithm(self, x, unlabeled):
        """With `algorithm=None`: the default that suits how the unlabeled images come.

        `SelfTraining` keeps a pseudo-label per image, so it needs them all
        in memory: an array, or any finite source read once into an
        `ImageStore` (a finite `tf.data.Dataset`, the unlabeled part of a
        zipped one, a `PyDataset`, a generator, a folder's dataset). An
        endless stream gets `STREAM_DEFAULT` (FixMatch). A supervised `fit`
        (no unlabeled images) changes nothing. `algorithm_reason` says why.
        """
        if not self._default_algorithm:
            return
        try:
            source = _unlabeled_source(x, unlabeled)
        except checks.InputError:
            return  # `data.read` reports the bad input
        if source is _NO_UNLABELED:
            return
        if source is not None and data.can_store(source):
            self._use_default(False, "the default: every unlabeled image fits a "
                                     "pseudo-label table")
        else:
            self._use_default(True, "the default for an endless unlabeled stream, which "
                                    "a pseudo-label table cannot hold")
            warnings.warn(
                "The unlabeled images come as an endless stream (a dataset that repeats "
                "with a transformation after the repeat, or a PyDataset without a "
                "length), which a pseudo-label table cannot hold: keras-ssl uses "
                f"FixMatch(threshold=0.8) instead of its default. {_FALLBACK_COST} Pass "
                "a finite stream (before .repeat()) or an array to get the default.",
                stacklevel=4,
            )

    def _use_default(self, streamed, reason):
        wanted = algorithms.default(streamed=streamed)
        self.algorithm_reason = reason
        if type(wanted) is type(self.algorithm):
            return
        self.algorithm = wanted
        self.train_function = None  # the step was traced for the other algorithm

    def _table_inputs(self, x, unlabeled, verbose):
        """For a table or per-image-state algorithm (`uses_table`, `uses_index`):
        `(x, unlabeled)` with the unlabeled images in memory.

        A stream is read once into an `ImageStore` (kept for the next `fit`
        with the same source); a zipped dataset is split into its labeled
        part and its unlabeled images. If the source cannot be stored and
        the algorithm is the default, FixMatch takes over with a warning.
        """
        source = _unlabeled_source(x, unlabeled)
        if source is _NO_UNLABELED or source is None or checks.is_array(source):
            return x, unlabeled
        zipped = unlabeled is None
        try:
            if self._stores.source is source:
                store = self._stores.store
            else:
                store = data.ImageStore.read(source, memory_gb=self.unlabeled_memory_gb,
                                             verbose=verbose)
                self._stores = _Untracked(source=source, store=store)
        except data.StoreError as error:
            if not getattr(self.algorithm, "uses_table", False):
                warnings.warn(
                    f"{error} {type(self.algorithm).__name__} keeps state per unlabeled "
                    "image, which needs them in memory; it streams them instead and "
                    "estimates that state from the batches.",
                    stacklevel=3,
                )
                return x, unlabeled
            rereadable = not isinstance(source, types.GeneratorType)
            if not (self._default_algorithm and rereadable):
                raise
            self._use_default(True, "the fallback for unlabeled images that a "
                                    "pseudo-label table cannot hold")
            warnings.warn(
                f"{error} keras-ssl falls back to FixMatch(threshold=0.8), which streams "
                f"the images. {_FALLBACK_COST}",
                stacklevel=3,
            )
            return x, unlabeled
        if verbose:
            _compat.print_msg(f"keras-ssl: {store.describe()}.")
        if zipped:
            labeled = data.split_zipped(x)[0]
            count = int(x.cardinality())
            if count >= 0 and int(labeled.cardinality()) != count:
                labeled = labeled.take(count)  # the zip's epoch: as long as its shorter part
            return labeled, store.images
        return x, store.images

    def _read(self, x, y=None, verbose=0, **kwargs):
        """Step 1: read and check every input (`keras_ssl.data.read`)."""
        checks.check_compiled(getattr(self, "compiled", False))
        checks.check_unlabeled_not_pair(kwargs.get("unlabeled"))
        self._choose_default_algorithm(x, kwargs.get("unlabeled"))
        array_feed = not data.tensorflow_available()
        if array_feed and not self.augment_on_device:
            raise checks.InputError(
                "TensorFlow is not installed, so keras-ssl cannot build its tf.data "
                "pipeline. Pass SemiSupervisedModel(..., augment_on_device=True) to "
                "feed numpy arrays and make the views in the training step, or "
                "install tensorflow."
            )
        if array_feed and kwargs.get("class_weight") is not None:
            raise checks.InputError(
                "Without TensorFlow, fit(class_weight=...) is not supported; pass "
                "sample_weight= instead."
            )
        uses_index = bool(getattr(self.algorithm, "uses_index", False))
        if (getattr(self.algorithm, "uses_table", False) or uses_index) and not array_feed:
            x, kwargs["unlabeled"] = self._table_inputs(x, kwargs.get("unlabeled"), verbose)
        has_unlabeled = kwargs.get("unlabeled") is not None or data.is_zipped(x)
        if has_unlabeled and verbose:
            _compat.print_msg(f"keras-ssl: {type(self.algorithm).__name__} "
                   f"({self.algorithm_reason}).")
        return data.read(
            x, y, unlabeled_ratio=self.unlabeled_ratio, array_feed=array_feed,
            value_range=self.value_range,
            unlabeled_index=bool(getattr(self.algorithm, "uses_table", False)),
            index_unlabeled=uses_index, **kwargs,
        )

    def _prepare(self, inputs):
        """Step 2: prepare the model from the first labeled batch, then the views.

        Checks the wrapped model's outputs, the loss and the labels (training,
        class weights, validation) on one forward pass; only when every check
        has passed does keras-ssl state change (range, teacher, algorithm
        state, views, reported metrics). Returns the training source.
        """
        x_sample, y_sample = inputs.x_sample, inputs.y_sample
        model_inputs = getattr(self.model, "inputs", None)
        checks.check_model_input(
            tuple(model_inputs[0].shape[1:]) if model_inputs else None, x_sample.shape[1:]
        )
        try:
            with _distribution_scope(self):
                if not self.model.built:
                    self.model(ops.convert_to_tensor(x_sample[:1].astype("float32")))
                outputs = self.model(x_sample[:2].astype("float32"), training=False)
        except Exception as error:  # noqa: BLE001 - any failure is reported alike
            raise checks.model_failure(error, x_sample.shape[1:]) from None
        outputs = outputs if isinstance(outputs, (dict, list, tuple)) else (
            ops.convert_to_numpy(outputs))
        num_classes, looks_like_probs = checks.check_outputs(
            outputs, self.output_mode, _ends_with_softmax(self.model)
        )
        loss = checks.single_loss(getattr(self, "loss", None))
        checks.check_loss(loss, self.from_logits, self.output_mode, looks_like_probs)
        labels = inputs.labels if inputs.labels is not None else y_sample
        checks.check_labels(labels, loss, num_classes)
        if inputs.class_weight is not None:
            checks.check_class_weight(inputs.class_weight, num_classes)
        if inputs.validation_labels is not None:
            checks.check_labels(inputs.validation_labels, loss, num_classes,
                                "validation_data labels")
        checks.check_loss_value(loss, y_sample[:2], outputs)
        value_range = inputs.value_range
        views = self._make_views(value_range, inputs.has_unlabeled)
        if value_range is None and any(
            augment.needs_value_range(view)
            for view in list(views.views.values()) + [views.labeled_view]
        ):
            raise checks.unknown_range_error(inputs.stats)

        # Every check passed: from here on, state changes.
        self.value_range = value_range
        if inputs.guard is not None:
            inputs.guard.num_classes.assign(num_classes)
        with _distribution_scope(self):
            # Under tf.distribute, state built here (the teacher, the
            # algorithm's variables, on-device view layers) is mirrored.
            self._ensure_built(x_sample)
            if getattr(self.algorithm, "uses_index", False) and getattr(
                    inputs, "unlabeled_count", None):
                self._size_unlabeled_state(inputs.unlabeled_count)
            if self.augment_on_device:
                self._build_device_views(x_sample)  # once: the layers stay
            else:
                self._augmentations = views
        self._reported = set(SSL_METRICS)
        if inputs.has_unlabeled:
            self._reported |= set(self.algorithm.metric_names)
            if getattr(self.algorithm, "table_ready", None) is not None:
                self._reported.add("labeled_accuracy")  # what the table's warm-up reads
            if inputs.has_unlabeled_labels:
                self._reported.add("pseudo_label_accuracy")
        table = None
        source = inputs.source
        if getattr(inputs, "unlabeled_images", None) is not None:
            table = PseudoLabelTable(inputs.unlabeled_images, num_classes,
                                     labels=inputs.unlabeled_labels,
                                     select=getattr(self.algorithm, "table_selection", None))
            if isinstance(source, data.ArraySource):
                source.table = table
            else:
                source = data.tf.data.Dataset.zip(
                    (source, table.stream(inputs.unlabeled_batch)))
        self._table = _Untracked(table=table)
        if isinstance(source, data.ArraySource):
            return source
        return augment.attach_views(
            source, self._augmentations.views, self._augmentations.labeled_view,
            zipped=inputs.has_unlabeled, on_device=self.augment_on_device,
        )

    def _size_unlabeled_state(self, count):
        """The algorithm's per-image state for `count` unlabeled images (`uses_index`).

        Kept when it already has that size (a continued `fit` continues it);
        otherwise made anew, in the place of the old in the model's weights.
        """
        old = list(self.algorithm.unlabeled_state())
        if old and int(self.algorithm.num_unlabeled) == int(count):
            return
        new = list(self.algorithm.build_unlabeled_state(count))
        for before, after in zip(old, new):
            _compat.replace_variable(self, before, after)
        replaced = {id(v): n for v, n in zip(old, new)}
        current = [replaced.get(id(v), v)
                   for v in (getattr(self, "algorithm_variables", None) or [])]
        known = {id(v) for v in current}
        _compat.track_variables(self, "algorithm_variables",
                                current + [v for v in new if id(v) not in known])
        self.train_function = None  # the step reads the new variables

    @property
    def pseudo_label_table(self):
        """The `PseudoLabelTable` of the last `fit` (algorithms with `uses_table`), or None."""
        return getattr(getattr(self, "_table", None), "table", None)

    def _make_views(self, value_range=None, with_unlabeled=True):
        """The algorithm's views (only those used), and the labeled view."""
        views = self.algorithm.build_views(value_range or self.value_range or (0.0, 1.0))
        needed = tuple(self.algorithm.views) + tuple(self.algorithm.teacher_views)
        name = self.algorithm.labeled_view
        labeled_view = views[name] if (self.augment_labeled and name) else None
        views = {name: views[name] for name in needed}
        return _Untracked(views=views if with_unlabeled else {}, labeled_view=labeled_view,
                          all_views=views)

    def _build_device_views(self, x_sample=None):
        """Make the views once and track their layers as model state.

        Under `jax.jit` a layer's random seed is only updated between steps
        if its `SeedGenerator` state is one of the model's non-trainable
        variables; otherwise every step would draw the same augmentation.
        """
        if self._augmentations.views is not None:
            return
        made = self._make_views()
        self._augmentations = _Untracked(views=made.all_views,
                                         labeled_view=made.labeled_view)
        layers = []
        for view in self._augmentations.views.values():
            if isinstance(view, keras.layers.Layer) and all(v is not view for v in layers):
                layers.append(view)
        for layer in layers:
            if keras.backend.backend() == "jax":
                # Keras marks RandomTranslation & co. as not XLA-safe (true
                # for TensorFlow); under JAX they run inside jax.jit, and
                # leaving the flag would silently turn the step's jit off.
                for sublayer in _compat.flatten_layers(layer):
                    sublayer.supports_jit = True
            if x_sample is not None and not layer.built:
                layer(ops.cast(np.asarray(x_sample)[:1], "float32"), training=True)
        _compat.track_variables(self, "view_layers", layers)
        if (
            keras.backend.backend() == "tensorflow"
            and self.compiled
            and self._jit_requested == "auto"
            and self.jit_compile
        ):
            # "auto" chose XLA (a GPU) before the views joined the step.
            self.jit_compile = False  # XLA cannot compile them on TensorFlow
            self.train_function = None

    def _ensure_built(self, x_sample):
        if not self.built:
            self.build(x_sample.shape)
        else:
            self._build_teacher()

    # ----------------------------------------------------------- EMA weights

    @contextlib.contextmanager
    def ema_weights(self, batchnorm_data=None, batchnorm_steps=50, batch_size=128,
                    student=False):
        """Evaluate, predict or label with the EMA weights, inside a `with` block.

        The model's EMA of the trainable weights (`ema_decay`) replaces them
        for the block; with `batchnorm_data`, BatchNorm moving statistics are
        recomputed exactly for those weights on it first
        (`recompute_batchnorm_statistics`). On exit the model's own weights
        and statistics are back, bit for bit. Call it between `fit`s (or in a
        callback's epoch begin/end), not inside a compiled step.

        Example:

        ```python
        ssl.fit(x, y, unlabeled=u, epochs=10)
        with ssl.ema_weights(batchnorm_data=u):
            ssl.evaluate(x_test, y_test)
            probs = ssl.predict(x_new)
        ```

        Args:
            batchnorm_data: unaugmented training images (numpy array or
                anything `recompute_batchnorm_statistics` takes), or None to
                keep the student's moving statistics.
            batchnorm_steps: batches for the recomputation. Default 50.
            batch_size: their size (arrays). Default 128.
            student: keep the student's weights (only the statistics are
                recomputed, and restored on exit). Default False.
        """
        if not self.teacher_weights and not student:
            raise ValueError(
                "ema_weights(): this model keeps no EMA of its weights (it was built "
                "with ema_decay=None, or has not been built by fit yet). Build it with "
                "SemiSupervisedModel(..., ema_decay=0.999)."
            )
        from keras_ssl.batchnorm import recompute_batchnorm_statistics

        trainable = [ops.convert_to_numpy(v) for v in self.model.trainable_variables]
        frozen = [ops.convert_to_numpy(v) for v in self.model.non_trainable_variables]
        try:
            for variable, average in zip(self.teacher_sources,
                                         [] if student else self.teacher_weights):
                variable.assign(ops.copy(average.value))
            if batchnorm_data is not None:
                recompute_batchnorm_statistics(self.model, batchnorm_data,
                                               steps=batchnorm_steps, batch_size=batch_size)
            yield self
        finally:
            for variable, value in zip(self.model.trainable_variables, trainable):
                variable.assign(value)
            for variable, value in zip(self.model.non_trainable_variables, frozen):
                variable.assign(value)

    # -------------------------------------------------------------- saving

    def export_model(self, which="student", batchnorm_data=None, batchnorm_steps=50):
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
                weights the model keeps; not with `ema_decay=None`).
            batchnorm_data: unaugmented training images: the copy's BatchNorm
                statistics are recomputed for its weights on them
                (`recompute_batchnorm_statistics`, `batchnorm_steps` batches of
                128). None (default) keeps the model's moving statistics.

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
                "export_model(which='teacher'): this model keeps no EMA of its "
                "weights (it was built with ema_decay=None). Build it with "
                "SemiSupervisedModel(..., ema_decay=0.999), or export which='student'."
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
            for variable, average in zip(_compat.designed_trainable_variables(copy),
                                         self.teacher_weights):
                variable.assign(average.value)
        if batchnorm_data is not None:
            from keras_ssl.batchnorm import recompute_batchnorm_statistics

            recompute_batchnorm_statistics(copy, batchnorm_data, steps=batchnorm_steps,
                                           batch_size=128)
        return copy

    def compile_from_config(self, config):
        # `compile` is overridden (only to default the loss), so Keras's own
        # `compile_from_config` would skip it and load an uncompiled model.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update({
            "model": keras.saving.serialize_keras_object(self.model),
            # None: the library's default, chosen again at each `fit` after loading.
            "algorithm": None if self._default_algorithm else (
                keras.saving.serialize_keras_object(self.algorithm)),
            "unlabeled_ratio": self.unlabeled_ratio,
            "value_range": None if self.value_range is None else list(self.value_range),
            "outputs": self.output_mode,
            "augment_labeled": self.augment_labeled,
            "augment_on_device": self.augment_on_device,
            "ema_decay": self.ema_decay,
            "ema_warmup": self.ema_warmup,
            "target_pass": self.target_pass,
            "unlabeled_memory_gb": self.unlabeled_memory_gb,
        })
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(
            config["model"], custom_objects=custom_objects
        )
        if config.get("algorithm") is not None:
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
        if self.augment_on_device and self.value_range is not None:
            self._build_device_views()  # their seed state is saved with the model


def _correct(y, logits):
    """1.0 where the logits' class is the label's: Keras's accuracy for class
    indices, or for one-hot/soft rows."""
    if len(y.shape) == len(logits.shape) and y.shape[-1] == logits.shape[-1] != 1:
        return keras.metrics.categorical_accuracy(y, logits)
    return keras.metrics.sparse_categorical_accuracy(y, logits)


def _resolve_ema(ema_decay, ema_warmup, ema_teacher, algorithm):
    """The one EMA decay of the model, from its argument or a deprecated spelling."""
    if ema_teacher is not None:
        warnings.warn(
            "SemiSupervisedModel(ema_teacher={...}) is deprecated: pass "
            "ema_decay=... and ema_warmup=... instead.",
            FutureWarning,
            stacklevel=3,
        )
        ema_decay = ema_teacher.get("decay", 0.999)
        ema_warmup = ema_teacher.get("warmup", ema_warmup)
    if isinstance(ema_decay, str):
        if ema_decay != "auto":
            raise ValueError(
                "SemiSupervisedModel(ema_decay=...) must be 'auto', a float in [0, 1) "
                f"or None; received {ema_decay!r}."
            )
        legacy = getattr(algorithm, "ema_decay", None)  # MeanTeacher(ema_decay=...)
        ema_decay = 0.999 if legacy is None else legacy
    if ema_decay is None:
        if algorithm.needs_teacher:
            raise ValueError(
                f"{type(algorithm).__name__} needs the model's EMA teacher, but "
                "SemiSupervisedModel(ema_decay=None) keeps none. Pass ema_decay=0.999 "
                "(or another decay in [0, 1))."
            )
        return None, bool(ema_warmup)
    return checks.check_ema_decay(ema_decay), bool(ema_warmup)


def _replica_share(value):
    """`value / replicas` under tf.distribute (as Keras scales its losses), else `value`."""
    return _compat.scale_loss_for_distribution(value)


def _replica_total(value):
    """Undo `_replica_share`: the per-replica mean of a Keras-scaled loss."""
    return _compat.unscale_loss_for_distribution(value)


def _for_multi_worker(model, logs):
    """Logs that Keras 3 can reduce under MultiWorkerMirroredStrategy.

    Keras reduces each replica's step logs with
    `strategy.reduce("MEAN", value, axis=0)` there, which fails on scalars for
    every model ("Invalid reduction dimension 0 for input with 0 dimensions",
    tensorflow/tensorflow#72388). As shape-(1,) tensors they reduce to the
    mean over all replicas of all workers; the epoch logs come from the
    metrics themselves and are unchanged.
    """
    strategy = _compat.distribute_strategy(model)
    if keras.backend.backend() != "tensorflow" or strategy is None:
        return logs
    import tensorflow as tf

    if not (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and _compat.in_multi_worker_mode(strategy)
    ):
        return logs
    return keras.tree.map_structure(
        lambda v: ops.reshape(v, (1,)) if len(ops.shape(v)) == 0 else v, logs
    )


def _distribution_scope(model):
    """The model's tf.distribute scope on TensorFlow (variables made in it
    are mirrored), else a no-op: JAX's keras.distribution needs none."""
    strategy = getattr(model, "distribute_strategy", None)
    if keras.backend.backend() != "tensorflow" or strategy is None:
        return contextlib.nullcontext()
    return strategy.scope()


_NO_UNLABELED = object()
_FALLBACK_COST = (
    "A FixMatch step costs about twice a self-training step (it also runs a weak view "
    "of every unlabeled image), and on the CIFAR-10 CPU protocol it was less accurate "
    "than self-training and than supervised training for the same wall time "
    "(docs/experiments.md)."
)


def _unlabeled_source(x, unlabeled):
    """The unlabeled images `fit` received: `unlabeled`, the unlabeled part of a
    zipped `x` (None when it cannot be taken apart), or `_NO_UNLABELED`."""
    if unlabeled is not None:
        return unlabeled
    if data.input_kind(x, "x") != "zipped":
        return _NO_UNLABELED
    parts = data.split_zipped(x)
    return None if parts is None else parts[1]
