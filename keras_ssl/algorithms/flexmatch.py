"""FlexMatch: class-wise curriculum thresholds from a memory of each image's latest confident class."""

import numbers

from keras import ops

from keras_ssl import losses
from keras_ssl.algorithms.base import register
from keras_ssl.algorithms.pseudo_label import PseudoLabel


@register("flexmatch")
class FlexMatch(PseudoLabel):
    """FlexMatch (Zhang et al., 2021): curriculum pseudo-labelling.

    FlexMatch lowers the threshold of classes the model has not learned
    yet. It remembers, for every unlabeled image, the class it was last
    predicted as with confidence above `threshold` (or none). Each class's
    learning effect is `sigma_c`, the number of images remembered as `c`;
    its normalised effect `beta_c = sigma_c / max(max_c sigma_c, unused)`
    (`unused`: images never predicted confidently; the paper's threshold
    warm-up, `threshold_warmup=True`) and its threshold
    `threshold * beta_c / (2 - beta_c)` (the convex mapping). Each batch is
    masked with the thresholds from before it; then the memory of its
    confident images is updated, and the thresholds with it. While every
    image is unused (the start) the thresholds are 0: every pseudo-label
    counts.

    The memory is a variable with one entry per unlabeled image, saved with
    the model (`num_unlabeled` records its size); it needs each image's
    index, which `fit` supplies for any finite source of unlabeled images
    (an array, or a stream read into memory). For an endless stream, or
    with `memory="running"`, the counts are estimated instead: running
    means (momentum `momentum`) of each batch's share of confident images
    per class and of unconfident ones, which gives the same ratios without
    per-image state but reacts more slowly.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.FlexMatch())
    ssl.compile(optimizer="adam")
    ssl.fit(x_labeled, y_labeled, unlabeled=x_unlabeled, epochs=10)
    ```

    Args:
        threshold: the upper threshold, reached by well-learned classes,
            and the confidence at which an image is remembered. Default
            0.95 (the paper's).
        memory: `"per_image"` (default, the paper's) or `"running"` (above).
        threshold_warmup: normalise by the unused images too while they are
            the most (the paper's warm-up). Default True.
        momentum: momentum of the running estimate (`memory="running"`).
            Default 0.999.
        num_unlabeled: size of the per-image memory; set by `fit` (give it
            only to rebuild a saved model by hand).
        unlabeled_weight, temperature, weak, strong, flip, hard_labels: as in
            `keras_ssl.algorithms.PseudoLabel`.
    """

    metric_names = ("mask_rate", "threshold")

    def __init__(self, threshold=0.95, momentum=0.999, unlabeled_weight=1.0,
                 temperature=1.0, weak=None, strong=None, flip=True, memory="per_image",
                 threshold_warmup=True, num_unlabeled=None, hard_labels=True):
        super().__init__(unlabeled_weight, temperature, weak, strong, flip, hard_labels)
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not (
            0.0 < float(threshold) < 1.0
        ):
            raise ValueError(
                f"FlexMatch(threshold=...) must be in (0, 1); received {threshold!r}."
            )
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(
                f"FlexMatch(momentum=...) must be in [0, 1); received {momentum!r}."
            )
        if memory not in ("per_image", "running"):
            raise ValueError(
                f"FlexMatch(memory=...) must be 'per_image' or 'running'; received {memory!r}."
            )
        self.threshold = float(threshold)
        self.momentum = float(momentum)
        self.memory = memory
        self.threshold_warmup = bool(threshold_warmup)
        self.num_unlabeled = None if num_unlabeled is None else int(num_unlabeled)
        self.num_classes = None
        self.class_shares = None
        self.learning_effect = None
        self.remembered = None
        self._with_memory = False

    @property
    def uses_index(self):
        """Whether the step must pass each unlabeled image's index (the memory)."""
        return self.memory == "per_image"

    def build_state(self, num_classes):
        classes = self.known_classes(num_classes)
        self.num_classes = classes
        # Shares of [class 0, ..., class C-1, unconfident]; at the start every
        # image is unconfident (the paper's initial state).
        initial = ops.concatenate([ops.zeros((classes,)), ops.ones((1,))])
        self.class_shares = self.state_variable("class_shares", initial)
        self.learning_effect = self.state_variable("learning_effect", ops.zeros((classes,)))
        state = [self.class_shares, self.learning_effect]
        if self.uses_index and self.num_unlabeled:
            state += self.build_unlabeled_state(self.num_unlabeled)
        return state

    def build_unlabeled_state(self, num_unlabeled):
        """The per-image memory for `num_unlabeled` images (-1: never confident)."""
        self.num_unlabeled = int(num_unlabeled)
        self.remembered = self.state_variable(
            "remembered", -ops.ones((self.num_unlabeled,), "int32"), dtype="int32")
        return [self.remembered]

    def normalised_effect(self, counts, unused):
        """`beta_c` from the per-class counts and the unused count (the paper's eq. 6-7)."""
        if self.threshold_warmup:
            denominator = ops.maximum(ops.max(counts), unused)
        else:
            denominator = ops.max(counts)
        return counts / ops.maximum(denominator, 1e-12)

    def class_thresholds(self, beta):
        """`threshold * M(beta_c)` with the convex mapping `M(x) = x / (2 - x)`."""
        return self.threshold * beta / (2.0 - beta)

    def unlabeled_state(self):
        """The per-image variables (the memory), or [] before `fit` sized it."""
        return [] if self.remembered is None else [self.remembered]

    def _current_effect(self):
        if self._with_memory:
            return self.learning_effect.value
        shares = self.class_shares.value
        return self.normalised_effect(shares[:-1], shares[-1])

    def mask(self, probs, confidence, labels, index=None):
        # The memory needs each image's index; without it (an endless
        # stream) the running estimate stands in.
        self._with_memory = self.remembered is not None and index is not None
        classes = ops.shape(probs)[-1]
        labels = ops.cast(labels, "int32")
        # The mask uses the thresholds from before this batch.
        per_example = ops.take(self.class_thresholds(self._current_effect()), labels)
        mask = losses.threshold_mask(confidence, per_example)
        confident = ops.greater_equal(confidence, self.threshold)
        if self._with_memory:
            self._remember(ops.cast(index, "int32"), labels, confident, self.num_classes)
        else:
            one_hot = ops.one_hot(labels, classes) * ops.cast(confident, "float32")[:, None]
            batch = ops.concatenate([
                ops.mean(one_hot, axis=0),
                ops.reshape(1.0 - ops.mean(ops.cast(confident, "float32")), (1,))])
            self.class_shares.assign(
                self.momentum * self.class_shares.value + (1.0 - self.momentum) * batch)
        return mask

    def _remember(self, index, labels, confident, classes):
        old = ops.take(self.remembered.value, index)
        new = ops.where(confident, labels, old)
        memory = ops.scatter_update(self.remembered.value, index[:, None], new)
        self.remembered.assign(memory)
        # Counts of [unused, class 0, ..., class C-1] (a sum of one-hots:
        # bincount needs a static length on JAX).
        counts = ops.sum(ops.one_hot(memory + 1, classes + 1), axis=0)
        unused, per_class = counts[0], counts[1:]
        # As in the paper's code: no update while one class (or "unused")
        # holds every image.
        settled = ops.less(ops.maximum(ops.max(per_class), unused), float(self.num_unlabeled))
        beta = self.normalised_effect(per_class, unused)
        self.learning_effect.assign(ops.where(settled, beta, self.learning_effect.value))

    def extra_metrics(self):
        return {"threshold": ops.mean(self.class_thresholds(self._current_effect()))}

    def get_config(self):
        config = {"threshold": self.threshold, "momentum": self.momentum,
                  **super().get_config()}
        if self.memory != "per_image":
            config["memory"] = self.memory
        if not self.threshold_warmup:
            config["threshold_warmup"] = False
        if self.num_unlabeled is not None and self.uses_index:
            config["num_unlabeled"] = self.num_unlabeled
        return config
