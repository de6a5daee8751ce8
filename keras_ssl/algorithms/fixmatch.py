"""FixMatch: confident pseudo-labels from a weak view train a strong view."""

import numbers

import keras

from keras_ssl import augment, losses
from keras_ssl.algorithms.base import Algorithm


@keras.saving.register_keras_serializable(package="keras_ssl")
class FixMatch(Algorithm):
    """FixMatch (Sohn et al., 2020).

    For every unlabeled image the prediction on a weakly augmented view (no
    gradient) becomes a hard pseudo-label where its confidence reaches
    `threshold`; the model is trained with cross-entropy to predict that label
    on a strongly augmented view. Unconfident images are masked out.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(
        model, algorithm=keras_ssl.FixMatch(threshold=0.95), unlabeled_ratio=7)
    ssl.compile(optimizer="adam", metrics=["accuracy"])  # loss: sparse CE on logits
    ssl.fit(x_labeled, y_labeled, unlabeled=x_unlabeled, epochs=10)
    ```

    Args:
        threshold: confidence in (0, 1) a pseudo-label must reach. Default 0.95.
        unlabeled_weight: weight of the unlabeled loss. Default 1.0.
        temperature: softmax temperature of the weak view's prediction.
        weak: a callable (e.g. a Keras layer) producing the weak view, or None
            for `augment.weak_augmentation` (flip + 12.5% translation).
        strong: a callable producing the strong view, or None for
            `augment.strong_augmentation` (weak + RandAugment + cutout).
        flip: whether the default views use horizontal flips. Turn it off for
            images that are not mirror-symmetric, such as digits.
    """

    views = ("weak", "strong")
    metric_names = ("mask_rate",)

    def __init__(self, threshold=0.95, unlabeled_weight=1.0, temperature=1.0,
                 weak=None, strong=None, flip=True):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not (
            0.0 < float(threshold) < 1.0
        ):
            raise ValueError(
                f"FixMatch(threshold=...) must be in (0, 1); received {threshold!r}. "
                "Typical values are 0.7-0.95."
            )
        if float(unlabeled_weight) < 0:
            raise ValueError(
                f"FixMatch(unlabeled_weight=...) must be >= 0; received {unlabeled_weight!r}."
            )
        if float(temperature) <= 0:
            raise ValueError(
                f"FixMatch(temperature=...) must be > 0; received {temperature!r}."
            )
        self.threshold = float(threshold)
        self.unlabeled_weight = float(unlabeled_weight)
        self.temperature = float(temperature)
        self.weak = weak
        self.strong = strong
        self.flip = bool(flip)

    def build_views(self, value_range):
        weak = self.weak or augment.weak_augmentation(value_range, flip=self.flip)
        strong = self.strong or augment.strong_augmentation(value_range, flip=self.flip)
        return {"weak": weak, "strong": strong}

    def mask(self, probs, confidence, labels):
        """Which pseudo-labels to keep. Subclasses change only this."""
        del probs, labels
        return losses.threshold_mask(confidence, self.threshold)

    def unlabeled_loss(self, logits, teacher_logits, step):
        probs, confidence, labels = losses.pseudo_labels(logits["weak"], self.temperature)
        mask = self.mask(probs, confidence, labels)
        loss = losses.masked_cross_entropy(logits["strong"], labels, mask)
        metrics = {"mask_rate": keras.ops.mean(mask)}
        return self.unlabeled_weight * loss, metrics, labels

    def get_config(self):
        # Custom `weak`/`strong` views are code: they are not saved.
        return {
            "threshold": self.threshold,
            "unlabeled_weight": self.unlabeled_weight,
            "temperature": self.temperature,
            "flip": self.flip,
        }
