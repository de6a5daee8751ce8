"""Mean Teacher: match an exponential moving average of the model."""

import keras

from keras_ssl import augment, losses
from keras_ssl.algorithms.base import Algorithm


@keras.saving.register_keras_serializable(package="keras_ssl")
class MeanTeacher(Algorithm):
    """Mean Teacher (Tarvainen and Valpola, 2017).

    The teacher is an exponential moving average (EMA) of the student's
    weights, kept by `SemiSupervisedModel` and updated every step. Each
    unlabeled image is augmented twice, independently; the student's class
    probabilities on one view are pulled towards the teacher's on the other
    with a mean squared error, whose weight ramps up as `exp(-5 (1 - t)^2)`.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(
        model, algorithm=keras_ssl.MeanTeacher(rampup_steps=300))
    ssl.compile(optimizer="adam")  # loss: sparse cross-entropy on logits
    ssl.fit(x_labeled, y_labeled, unlabeled=x_unlabeled, epochs=10)
    ```

    Args:
        ema_decay: decay of the teacher's EMA. Default 0.999 (with the usual
            warm-up `min(decay, (1 + t) / (10 + t))`).
        consistency_weight: final weight of the consistency loss. Default 50
            (USB's default; on digits with 20 labels, 50 beat 10 by 5 points).
        rampup_steps: steps over which that weight ramps up. Default 1000.
        view: a callable producing each augmented view, or None for
            `augment.weak_augmentation`.
        flip: whether the default view uses horizontal flips.
    """

    views = ("student",)
    teacher_views = ("teacher",)
    metric_names = ("consistency_weight",)

    def __init__(self, ema_decay=0.999, consistency_weight=50.0, rampup_steps=1000,
                 view=None, flip=True):
        if not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(
                f"MeanTeacher(ema_decay=...) must be in [0, 1); received {ema_decay!r}."
            )
        if float(consistency_weight) < 0:
            raise ValueError(
                "MeanTeacher(consistency_weight=...) must be >= 0; "
                f"received {consistency_weight!r}."
            )
        if int(rampup_steps) < 0:
            raise ValueError(
                f"MeanTeacher(rampup_steps=...) must be >= 0; received {rampup_steps!r}."
            )
        self.teacher_decay = float(ema_decay)
        self.consistency_weight = float(consistency_weight)
        self.rampup_steps = int(rampup_steps)
        self.view = view
        self.flip = bool(flip)

    @property
    def ema_decay(self):
        return self.teacher_decay

    def build_views(self, value_range):
        view = self.view or augment.weak_augmentation(value_range, flip=self.flip)
        return {"student": view, "teacher": view}

    def unlabeled_loss(self, logits, teacher_logits, step):
        weight = self.consistency_weight * losses.sigmoid_rampup(step, self.rampup_steps)
        loss = losses.soft_mse(logits["student"], teacher_logits["teacher"])
        labels = keras.ops.argmax(teacher_logits["teacher"], axis=-1)
        return weight * loss, {"consistency_weight": weight}, labels

    def get_config(self):
        return {
            "ema_decay": self.teacher_decay,
            "consistency_weight": self.consistency_weight,
            "rampup_steps": self.rampup_steps,
            "flip": self.flip,
        }
