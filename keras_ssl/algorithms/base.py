"""The contract between `SemiSupervisedModel` and an SSL algorithm."""

import keras


class Algorithm:
    """Base class of SSL algorithms: turns outputs on views into a loss.

    An algorithm is a small object. It names the augmented views of each
    unlabeled batch that it needs (`views`), which of them also go through the
    EMA teacher (`teacher_views`), and computes the unlabeled loss and its
    metrics from the model's logits on those views. The model owns batching,
    the single concatenated forward pass, gradients and the teacher.

    Subclass it and implement `build_views` and `unlabeled_loss`:

    ```python
    class PiModel(keras_ssl.Algorithm):
        views = ("a", "b")

        def build_views(self, value_range):
            view = keras_ssl.augment.weak_augmentation(value_range)
            return {"a": view, "b": view}

        def unlabeled_loss(self, logits, teacher_logits, step):
            loss = keras_ssl.losses.soft_mse(logits["a"], logits["b"])
            return loss, {}, None
    ```

    Class attributes:
        views: names of the unlabeled views, in forward-pass order.
        teacher_views: views also run through the EMA teacher.
        metric_names: names of the extra metrics `unlabeled_loss` returns.
    """

    views = ()
    teacher_views = ()
    metric_names = ()
    # EMA decay of the teacher this algorithm needs, or None for no teacher.
    teacher_decay = None

    def build_views(self, value_range):
        """Return `{view_name: callable}` that augments a batch of images."""
        raise NotImplementedError

    def build(self, num_classes):
        """Create and return state variables (e.g. adaptive thresholds).

        Called once by the model when it is built. `num_classes` is the
        width of the model's output, or None when the model cannot tell it
        before seeing data. Return a list of `keras.Variable`s (non-trainable)
        that the model tracks, saves and feeds to the compiled step.
        """
        return []

    def unlabeled_loss(self, logits, teacher_logits, step):
        """Return `(loss, metrics, pseudo_labels)` for one unlabeled batch.

        Args:
            logits: dict `{view: float32 logits}` of the student.
            teacher_logits: dict `{view: float32 logits}` of the EMA teacher
                for `teacher_views` (empty when there is none).
            step: the number of training steps done so far (a scalar tensor).

        Returns:
            loss: a scalar, already weighted by the algorithm's own weight.
            metrics: dict `{name: scalar}` for the names in `metric_names`.
            pseudo_labels: integer class per unlabeled image (used only to
                report pseudo-label accuracy when ground truth is given), or
                None.
        """
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def serialize(algorithm):
    return keras.saving.serialize_keras_object(algorithm)


def deserialize(config):
    return keras.saving.deserialize_keras_object(config)
