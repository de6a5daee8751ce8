"""`PseudoLabel`: the base of FixMatch-style algorithms (weak view -> target -> strong view)."""

import keras

from keras_ssl import augment, losses
from keras_ssl.algorithms.base import (
    Algorithm,
    UnlabeledLoss,
    deserialize_view,
    serialize_view,
)


class PseudoLabel(Algorithm):
    """Pseudo-labels from a weak view train a strong view, weighted per image.

    For every unlabeled image the model's prediction on a weakly augmented
    view (no gradient) gives a target (`targets`: the hard class by default)
    and a weight in [0, 1] (`mask`); the model is trained with cross-entropy
    to predict the target on a strongly augmented view. FixMatch, FreeMatch,
    FlexMatch or SoftMatch differ only in `mask` (and state built in
    `build_state`): a subclass overrides what it must.

    Example:

    ```python
    @keras_ssl.algorithms.register("confident")
    class Confident(keras_ssl.algorithms.PseudoLabel):
        def mask(self, probs, confidence, labels):
            return keras_ssl.losses.threshold_mask(confidence, 0.9)
    ```

    Args:
        unlabeled_weight: weight of the unlabeled loss. Default 1.0.
        temperature: softmax temperature of the weak view's prediction.
        weak: a callable (best a Keras layer, which is saved with the
            algorithm) producing the weak view, or None for
            `augment.weak_augmentation` (flip + 12.5% translation).
        strong: the same for the strong view, or None for
            `augment.strong_augmentation` (weak + RandAugment + cutout).
        flip: whether the default views use horizontal flips. Turn it off for
            images that are not mirror-symmetric, such as digits.
    """

    views = ("weak", "strong")
    target_views = ("weak",)
    labeled_view = "weak"
    metric_names = ("mask_rate",)

    def __init__(self, unlabeled_weight=1.0, temperature=1.0, weak=None, strong=None,
                 flip=True):
        name = type(self).__name__
        if float(unlabeled_weight) < 0:
            raise ValueError(
                f"{name}(unlabeled_weight=...) must be >= 0; received {unlabeled_weight!r}."
            )
        if float(temperature) <= 0:
            raise ValueError(
                f"{name}(temperature=...) must be > 0; received {temperature!r}."
            )
        self.unlabeled_weight = float(unlabeled_weight)
        self.temperature = float(temperature)
        self.weak = deserialize_view(weak)
        self.strong = deserialize_view(strong)
        self.flip = bool(flip)

    def build_views(self, value_range):
        weak = self.weak or augment.weak_augmentation(value_range, flip=self.flip)
        strong = self.strong or augment.strong_augmentation(value_range, flip=self.flip)
        return {"weak": weak, "strong": strong}

    def known_classes(self, num_classes):
        """`num_classes` for `build_state`, or a clear error when it is not known yet."""
        if num_classes is None:
            raise ValueError(
                f"{type(self).__name__} needs the number of classes: build the wrapped "
                "model (e.g. give it a keras.Input) before wrapping it."
            )
        return int(num_classes)

    def state_variable(self, name, value):
        """A non-trainable float32 state variable of this algorithm (for `build_state`)."""
        return keras.Variable(value, dtype="float32", trainable=False,
                              name=f"{self.name}_{name}", aggregation="mean")

    def adjust(self, probs):
        """The weak view's class probabilities as the targets use them.

        Identity by default; e.g. distribution alignment (FixMatch's option)
        rescales them. Confidence and hard labels are taken after it.
        """
        return probs

    def targets(self, probs, confidence, labels):
        """The class each unlabeled image is trained towards (hard labels)."""
        del probs, confidence
        return labels

    def mask(self, probs, confidence, labels):
        """Per-image weights in [0, 1]. Subclasses change this."""
        raise NotImplementedError

    def extra_metrics(self):
        """More `{name: value}` for `metric_names` beyond the mask rate."""
        return {}

    def unlabeled_loss(self, logits, teacher_logits, step):
        probs, confidence, labels = losses.pseudo_labels(logits["weak"], self.temperature)
        adjusted = self.adjust(probs)
        if adjusted is not probs:
            probs = keras.ops.stop_gradient(adjusted)
            confidence = keras.ops.max(probs, axis=-1)
            labels = keras.ops.argmax(probs, axis=-1)
        mask = self.mask(probs, confidence, labels)
        target = self.targets(probs, confidence, labels)
        loss = losses.masked_cross_entropy(logits["strong"], target, mask)
        metrics = {"mask_rate": keras.ops.mean(mask), **self.extra_metrics()}
        return UnlabeledLoss(self.unlabeled_weight * loss, metrics, labels)

    def get_config(self):
        return {
            "unlabeled_weight": self.unlabeled_weight,
            "temperature": self.temperature,
            "flip": self.flip,
            "weak": serialize_view(self.weak),
            "strong": serialize_view(self.strong),
        }
