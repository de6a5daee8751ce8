"""The contract between `SemiSupervisedModel` and an SSL algorithm, and the registry."""

import warnings
from typing import Any, NamedTuple

import keras


class UnlabeledLoss(NamedTuple):
    """What `Algorithm.unlabeled_loss` returns for one unlabeled batch.

    Attributes:
        loss: a scalar, already weighted by the algorithm's own weight.
        metrics: dict `{name: scalar}` for the names in `metric_names`.
        pseudo_labels: integer class per unlabeled image (only used to report
            `pseudo_label_accuracy` when ground truth is given), or None.
    """

    loss: Any
    metrics: dict
    pseudo_labels: Any = None


_REGISTRY = {}


def register(name):
    """Class decorator: register an algorithm under `name` (and for saving).

    Example:

    ```python
    @keras_ssl.algorithms.register("pi_model")
    class PiModel(keras_ssl.Algorithm):
        ...

    keras_ssl.algorithms.get("pi_model")
    ```
    """

    def decorate(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(
                f"An algorithm is already registered as {name!r} "
                f"({_REGISTRY[name].__name__}); choose another name."
            )
        cls.name = name
        _REGISTRY[name] = cls
        return keras.saving.register_keras_serializable(package="keras_ssl")(cls)

    return decorate


def get(identifier, steps=None, **kwargs):
    """An algorithm from its registered name (or an instance, returned as is).

    Example:

    ```python
    keras_ssl.algorithms.get("fixmatch", threshold=0.8)
    keras_ssl.algorithms.get("mean_teacher", steps=3000)  # ramp-up sized to the run
    ```

    Args:
        identifier: a name from `names()` such as `"fixmatch"`, `"default"`
            (the library's default for array inputs, `default()`), or an
            `Algorithm` instance.
        steps: optional length of the run: the algorithm's `for_steps`
            settings (e.g. Mean Teacher's ramp-up) are used.
        **kwargs: constructor arguments, e.g. `threshold=0.8`.
    """
    if isinstance(identifier, Algorithm):
        if kwargs:
            raise ValueError(
                f"algorithms.get() received an instance ({identifier!r}) and arguments "
                f"{sorted(kwargs)}; pass a name to construct one."
            )
        return identifier
    def plain(name):
        return str(name).lower().replace("-", "").replace("_", "")

    if plain(identifier) == "default":
        return default(steps=steps, **kwargs)
    cls = {plain(name): cls for name, cls in _REGISTRY.items()}.get(plain(identifier))
    if cls is None:
        raise ValueError(
            f"Unknown algorithm {identifier!r}. Registered: {', '.join(names())}."
        )
    return cls(**kwargs) if steps is None else cls.for_steps(steps, **kwargs)


# The algorithm `SemiSupervisedModel(algorithm=None)` uses, chosen from the
# CIFAR-10 CPU protocol at equal wall time (docs/experiments.md): self-training with
# a pseudo-label table. The table needs every unlabeled image in memory
# (an array, or a finite stream read once); for an endless stream, or one
# over the memory budget, the default is `STREAM_DEFAULT`.
DEFAULT = ("self_training", {})
STREAM_DEFAULT = ("fixmatch", {"threshold": 0.8})


def default(steps=None, streamed=False, **kwargs):
    """The library's default algorithm (`SemiSupervisedModel(algorithm=None)`).

    `SelfTraining()` (`DEFAULT`) when the unlabeled images fit in memory
    (an array, or a finite stream `fit` reads once); with `streamed=True`
    (an endless stream, or one over the memory budget, which a pseudo-label
    table cannot hold) `FixMatch(threshold=0.8)` (`STREAM_DEFAULT`). `kwargs` override its
    settings (e.g. `flip=False`); `steps` as in `get`.
    """
    name, options = STREAM_DEFAULT if streamed else DEFAULT
    return get(name, steps=steps, **{**options, **kwargs})


def names():
    """The registered algorithm names, sorted."""
    return sorted(_REGISTRY)


class Algorithm:
    """Base class of SSL algorithms: turns the model's outputs on views into a loss.

    An algorithm is a small object. It names the augmented views of each
    unlabeled batch that it needs (`views`), which of them go through the EMA
    teacher (`teacher_views`), which view labeled images get
    (`labeled_view`), and computes the unlabeled loss and its metrics from the
    model's logits on those views. The model owns batching, the single
    concatenated forward pass, gradients and the EMA teacher.

    Subclass it, implement `build_views` and `unlabeled_loss`, and register
    it; pseudo-labelling methods subclass `keras_ssl.algorithms.PseudoLabel`
    instead and change only its hooks:

    ```python
    @keras_ssl.algorithms.register("pi_model")
    class PiModel(keras_ssl.Algorithm):
        views = ("a", "b")
        labeled_view = "a"

        def build_views(self, value_range):
            view = keras_ssl.augment.weak_augmentation(value_range)
            return {"a": view, "b": view}

        def unlabeled_loss(self, logits, teacher_logits, step):
            loss = keras_ssl.losses.soft_mse(logits["a"], logits["b"])
            return keras_ssl.algorithms.UnlabeledLoss(loss, {})
    ```

    Class attributes:
        name: the registered name (set by `register`).
        views: names of the unlabeled views, in forward-pass order.
        teacher_views: views run through the model's EMA teacher (the
            algorithm then needs one: `SemiSupervisedModel(ema_decay=...)`).
        labeled_view: the view labeled images get (None: unaugmented).
        target_views: views whose logits only make targets (no gradient
            flows through them): the model may run them in a separate
            forward pass without a backward pass
            (`SemiSupervisedModel(target_pass=...)`).
        metric_names: names of the extra metrics `unlabeled_loss` returns.
        uses_table: the algorithm reads stored pseudo-labels: the model
            keeps a `PseudoLabelTable` of every unlabeled image, refreshes it
            (every `refresh_interval(num_images, images_per_step, rows)` steps;
            `table_targets(probs)` turns the teacher's probabilities into
            its rows; an optional `table_selection(rows)` returns the images
            batches are drawn from, a boolean mask or draw weights) and
            passes each batch's rows as `teacher_logits["table"]`
            (log-probabilities).
        uses_index: the algorithm keeps state per unlabeled image: `fit`
            reads a finite unlabeled source into memory, calls
            `build_unlabeled_state(num_unlabeled)` (and `unlabeled_state()`
            to find what to replace when the count changes), and passes
            each batch's image indices to `unlabeled_loss(..., index=...)`.
    """

    name = None
    views = ()
    teacher_views = ()
    target_views = ()
    labeled_view = None
    metric_names = ()
    uses_table = False
    uses_index = False

    def build_unlabeled_state(self, num_unlabeled):
        """Create per-image state variables for `num_unlabeled` images (`uses_index`)."""
        del num_unlabeled
        return []

    def unlabeled_state(self):
        """The per-image state variables `build_unlabeled_state` made, or []."""
        return []

    @property
    def needs_teacher(self):
        return bool(self.teacher_views)

    @classmethod
    def for_steps(cls, steps, **kwargs):
        """An instance with settings suited to a run of `steps` steps.

        The default is the constructor's defaults; algorithms with
        schedules (e.g. Mean Teacher's ramp-up) scale them to the run.
        """
        del steps
        return cls(**kwargs)

    def refresh_interval(self, num_images, images_per_step, rows=None):
        """Steps between refreshes of the table (`uses_table`): `refresh_every`.

        `rows` are the table's rows after the latest refresh (None before
        the first), for algorithms that refresh sooner while the table is
        unconfident.
        """
        del num_images, images_per_step, rows
        return int(self.refresh_every)

    def refresh_batchnorm_steps(self, model, step):
        """Batches to recompute the teacher's BatchNorm statistics on before a
        refresh of the table at `step` (`uses_table`): `batchnorm_steps`, or 0
        (the moving statistics)."""
        del model, step
        return int(getattr(self, "batchnorm_steps", 0))

    def build_views(self, value_range):
        """Return `{view_name: callable}` that augments a batch of images."""
        raise NotImplementedError

    def build_state(self, num_classes):
        """Create and return state variables (e.g. adaptive thresholds).

        Called once by the model when it is built. `num_classes` is the
        width of the model's output, or None when the model cannot tell it
        before seeing data. Return a list of `keras.Variable`s (non-trainable)
        that the model tracks, saves and feeds to the compiled step.
        """
        legacy = getattr(type(self), "build", None)
        if legacy is not None:
            warnings.warn(
                f"{type(self).__name__}.build(num_classes) is deprecated: rename it "
                "build_state(num_classes).",
                FutureWarning,
                stacklevel=2,
            )
            return legacy(self, num_classes)
        return []

    def unlabeled_loss(self, logits, teacher_logits, step):
        """Return an `UnlabeledLoss` for one unlabeled batch.

        Args:
            logits: dict `{view: float32 logits}` of the student.
            teacher_logits: dict `{view: float32 logits}` of the EMA teacher
                for `teacher_views` (empty when there is none).
            step: the number of training steps done so far (a scalar tensor).
        """
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def describe(self):
        """Short text: the class and the settings that differ from its defaults."""
        import inspect

        defaults = {
            k: p.default for k, p in inspect.signature(type(self).__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        args = ", ".join(
            f"{k}={v!r}" for k, v in self.get_config().items()
            if not isinstance(v, dict) and k in defaults and v != defaults[k]
        )
        return f"{type(self).__name__}({args})"

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items()
                         if not isinstance(v, dict))
        return f"{type(self).__name__}({args})"


def as_unlabeled_loss(result):
    """An `UnlabeledLoss` from what `unlabeled_loss` returned (a 3-tuple too)."""
    if isinstance(result, UnlabeledLoss):
        return result
    if isinstance(result, tuple) and len(result) == 3:
        return UnlabeledLoss(*result)
    raise TypeError(
        "Algorithm.unlabeled_loss must return keras_ssl.algorithms.UnlabeledLoss(loss, "
        f"metrics, pseudo_labels); received {type(result).__name__}."
    )


def serialize_view(view):
    """A view for `get_config`: Keras layers serialize; other callables cannot."""
    if view is None:
        return None
    if isinstance(view, keras.layers.Layer):
        return keras.saving.serialize_keras_object(view)
    warnings.warn(
        f"The custom view {view!r} is not a Keras layer, so it is not saved with the "
        "algorithm: a reloaded model gets the default view. Make it a keras.layers.Layer "
        "(e.g. a keras.layers.Pipeline) to save it.",
        stacklevel=3,
    )
    return None


def deserialize_view(config):
    if config is None or callable(config):
        return config
    return keras.saving.deserialize_keras_object(config)
