"""`PseudoLabel`: the base of FixMatch-style algorithms (weak view -> target -> strong view)."""

import keras
from keras import ops

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
    view (no gradient) gives a target and a weight in [0, 1] (`mask`); the
    model is trained with cross-entropy to predict the target on a strongly
    augmented view. FixMatch, FreeMatch, FlexMatch or SoftMatch differ only
    in `adjust` (e.g. distribution alignment), `mask` and the state they
    keep (`build_state`): a subclass overrides what it must.

    The data flow of one unlabeled batch, as in the papers and their
    reference implementation (USB):

        p = softmax(weak logits)            (temperature 1, no gradient)
        q = adjust(p)                       (identity; alignment in some)
        mask = mask(q, max q, argmax q)     (the confidence the threshold sees)
        target = argmax q                   (hard_labels=True, the default)
               | sharpen(q, temperature)    (hard_labels=False: soft targets)
        loss = mean(mask * cross_entropy(target, strong logits))

    `temperature` only sharpens soft targets: thresholds always see the plain
    softmax, and with hard labels (the default) it has no effect.

    Example:

    ```python
    @keras_ssl.algorithms.register("confident")
    class Confident(keras_ssl.algorithms.PseudoLabel):
        def mask(self, probs, confidence, labels):
            return keras_ssl.losses.threshold_mask(confidence, 0.9)
    ```

    Args:
        unlabeled_weight: weight of the unlabeled loss. Default 1.0.
        temperature: sharpening temperature of soft targets
            (`hard_labels=False`). Default 1.0.
        weak: a callable (best a Keras layer, which is saved with the
            algorithm) producing the weak view, or None for
            `augment.weak_augmentation` (flip + 12.5% translation).
        strong: the same for the strong view, or None for
            `augment.strong_augmentation` (weak + RandAugment + cutout).
        flip: whether the default views use horizontal flips. Turn it off for
            images that are not mirror-symmetric, such as digits.
        hard_labels: train towards the predicted class (True, the default,
            as in the papers) or towards the (sharpened) class probabilities.
    """

    views = ("weak", "strong")
    target_views = ("weak",)
    labeled_view = "weak"
    metric_names = ("mask_rate",)
    # Targets come from the adjusted probabilities (FixMatch's alignment, as
    # ReMixMatch); SoftMatch takes them from the plain ones.
    targets_from_adjusted = True

    def __init__(self, unlabeled_weight=1.0, temperature=1.0, weak=None, strong=None,
                 flip=True, hard_labels=True):
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
        self.hard_labels = bool(hard_labels)

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

    def state_variable(self, name, value, dtype="float32"):
        """A non-trainable state variable of this algorithm (for `build_state`)."""
        return keras.Variable(value, dtype=dtype, trainable=False,
                              name=f"{self.name}_{name}", aggregation="mean")

    def alignment_state(self, num_classes):
        """The variables of distribution alignment (for `build_state`): the
        running class distribution and whether it has seen a batch."""
        self.marginal = self.state_variable(
            "marginal", keras.ops.ones((num_classes,)) / num_classes)
        self.marginal_started = self.state_variable("marginal_started", 0.0)
        return [self.marginal, self.marginal_started]

    def align(self, probs, momentum):
        """`probs` aligned to a uniform class distribution (ReMixMatch, as USB
        runs it): the running distribution starts at the first batch's mean
        and then moves with `momentum`. Needs `alignment_state`."""
        marginal = losses.update_marginal(self.marginal.value, probs, momentum,
                                          self.marginal_started.value)
        self.marginal.assign(marginal)
        self.marginal_started.assign(ops.ones_like(self.marginal_started.value))
        return losses.align_distribution(probs, marginal)

    def adjust(self, probs):
        """The weak view's class probabilities as masks and targets use them.

        Identity by default; e.g. distribution alignment (FixMatch's option)
        rescales them. Confidence and hard labels are taken after it.
        """
        return probs

    def targets(self, probs, confidence, labels):
        """What each unlabeled image is trained towards: the class `labels`,
        or with `hard_labels=False` the probabilities sharpened by
        `temperature` (soft targets)."""
        del confidence
        if self.hard_labels:
            return labels
        return losses.sharpen(probs, self.temperature)

    def mask(self, probs, confidence, labels):
        """Per-image weights in [0, 1]. Subclasses change this."""
        raise NotImplementedError

    def extra_loss(self, logits, mask):
        """A loss added to the weighted pseudo-label loss (0 by default)."""
        del logits, mask
        return 0.0

    def extra_metrics(self):
        """More `{name: value}` for `metric_names` beyond the mask rate."""
        return {}

    def unlabeled_loss(self, logits, teacher_logits, step, index=None):
        del teacher_logits, step
        probs = ops.stop_gradient(losses.probabilities(logits["weak"]))
        adjusted = ops.stop_gradient(self.adjust(probs))
        extra = {"index": index} if self.uses_index else {}
        mask = self.mask(adjusted, ops.max(adjusted, axis=-1), ops.argmax(adjusted, axis=-1),
                         **extra)
        source = adjusted if self.targets_from_adjusted else probs
        labels = ops.argmax(source, axis=-1)
        target = self.targets(source, ops.max(source, axis=-1), labels)
        loss = self.unlabeled_weight * losses.masked_cross_entropy(
            logits["strong"], target, mask)
        loss = loss + self.extra_loss(logits, mask)
        metrics = {"mask_rate": ops.mean(mask), **self.extra_metrics()}
        return UnlabeledLoss(loss, metrics, labels)

    def get_config(self):
        config = {
            "unlabeled_weight": self.unlabeled_weight,
            "temperature": self.temperature,
            "flip": self.flip,
            "weak": serialize_view(self.weak),
            "strong": serialize_view(self.strong),
        }
        if not self.hard_labels:
            config["hard_labels"] = False
        return config
