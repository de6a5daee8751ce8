"""Mean Teacher: match an exponential moving average of the model."""

import warnings

import keras

from keras_ssl import augment, losses
from keras_ssl.algorithms.base import (
    Algorithm,
    UnlabeledLoss,
    deserialize_view,
    register,
    serialize_view,
)


@register("mean_teacher")
class MeanTeacher(Algorithm):
    """Mean Teacher (Tarvainen and Valpola, 2017).

    The teacher is the exponential moving average (EMA) of the student's
    weights that `SemiSupervisedModel` keeps (`ema_decay=`, updated every
    step). Each unlabeled image is augmented twice, independently; the
    student's class probabilities on one view are pulled towards the
    teacher's on the other with a mean squared error, whose weight ramps up
    as `exp(-5 (1 - t)^2)`.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(
        model, algorithm=keras_ssl.MeanTeacher(rampup_steps=300), ema_decay=0.999)
    ssl.compile(optimizer="adam")  # loss: cross-entropy on logits
    ssl.fit(x_labeled, y_labeled, unlabeled=x_unlabeled, epochs=10)
    ```

    Args:
        consistency_weight: final weight of the consistency loss. Default 50
            (USB's default).
        rampup_steps: steps over which that weight ramps up. Default 1000.
        view: a callable (best a Keras layer, saved with the algorithm)
            producing each augmented view, or None for
            `augment.weak_augmentation`.
        flip: whether the default view uses horizontal flips.
        ema_decay: deprecated; pass `SemiSupervisedModel(ema_decay=...)`,
            the one owner of the teacher.
    """

    views = ("student",)
    teacher_views = ("teacher",)
    labeled_view = "student"
    metric_names = ("consistency_weight",)

    def __init__(self, consistency_weight=50.0, rampup_steps=1000, view=None, flip=True,
                 ema_decay=None):
        if float(consistency_weight) < 0:
            raise ValueError(
                "MeanTeacher(consistency_weight=...) must be >= 0; "
                f"received {consistency_weight!r}."
            )
        if int(rampup_steps) < 0:
            raise ValueError(
                f"MeanTeacher(rampup_steps=...) must be >= 0; received {rampup_steps!r}."
            )
        if ema_decay is not None:
            if not 0.0 <= float(ema_decay) < 1.0:
                raise ValueError(
                    f"MeanTeacher(ema_decay=...) must be in [0, 1); received {ema_decay!r}."
                )
            warnings.warn(
                "MeanTeacher(ema_decay=...) is deprecated: the model owns the teacher. "
                "Pass SemiSupervisedModel(..., ema_decay=...) instead; this value is "
                "used where the model's is left at its default.",
                FutureWarning,
                stacklevel=2,
            )
        self.ema_decay = None if ema_decay is None else float(ema_decay)
        self.consistency_weight = float(consistency_weight)
        self.rampup_steps = int(rampup_steps)
        self.view = deserialize_view(view)
        self.flip = bool(flip)

    @classmethod
    def for_steps(cls, steps, **kwargs):
        """Ramp the consistency weight up over the first 30 % of the run."""
        kwargs.setdefault("rampup_steps", int(0.3 * steps))
        return cls(**kwargs)

    def build_views(self, value_range):
        view = self.view or augment.weak_augmentation(value_range, flip=self.flip)
        return {"student": view, "teacher": view}

    def unlabeled_loss(self, logits, teacher_logits, step):
        weight = self.consistency_weight * losses.sigmoid_rampup(step, self.rampup_steps)
        loss = losses.soft_mse(logits["student"], teacher_logits["teacher"])
        labels = keras.ops.argmax(teacher_logits["teacher"], axis=-1)
        return UnlabeledLoss(weight * loss, {"consistency_weight": weight}, labels)

    def get_config(self):
        config = {
            "consistency_weight": self.consistency_weight,
            "rampup_steps": self.rampup_steps,
            "flip": self.flip,
            "view": serialize_view(self.view),
        }
        if self.ema_decay is not None:
            config["ema_decay"] = self.ema_decay
        return config
