"""Self-training: a table of the teacher's pseudo-labels, refreshed every few steps."""

import numbers

import numpy as np
from keras import ops

from keras_ssl import augment, losses
from keras_ssl.algorithms.base import (
    Algorithm,
    UnlabeledLoss,
    deserialize_view,
    register,
    serialize_view,
)


@register("self_training")
class SelfTraining(Algorithm):
    """Self-training with a pseudo-label table (Noisy-Student style).

    Every `refresh_every` steps the teacher (the current weights and their
    moving BatchNorm statistics, or with `use_ema=True` the model's EMA of
    them) labels the whole unlabeled set in inference mode; the table keeps
    its class probabilities, and the images whose stored confidence reaches
    `threshold` are selected. In between, each step draws its unlabeled
    batch from the selected images and trains the student on a strongly
    augmented view of them towards their stored hard pseudo-labels. No view
    is run only to make targets, so a step costs about a supervised step on
    `1 + unlabeled_ratio` times the images (FixMatch also runs a weak view
    of every unlabeled image).

    Distribution alignment (on by default) rescales the table so that the
    mean predicted class distribution over the unlabeled set is uniform (or
    `class_prior`) before thresholding: a teacher biased towards a few
    classes then does not flood training with them.

    It is the library's default (`SemiSupervisedModel(model)`) when `fit`
    gets the unlabeled images as a numpy array, which the table needs. Start
    it from a model that already predicts something: after supervised steps
    (`keras_ssl.fit_two_phase`, or a first `fit` without `unlabeled`); from
    scratch the early tables are mostly unconfident and masked out.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.SelfTraining(), unlabeled_ratio=3)
    ssl.compile(optimizer="adam", metrics=["accuracy"])
    ssl.fit(x_labeled, y_labeled, epochs=3, steps_per_epoch=200)   # supervised warm-up
    ssl.fit(x_labeled, y_labeled, unlabeled=x_unlabeled, epochs=10,
            steps_per_epoch=200)   # the table is refreshed every epoch
    ```

    Args:
        threshold: stored confidence (after alignment) a pseudo-label must
            reach to be trained on. Default 0.8.
        refresh_every: steps between refreshes of the table; it is refreshed
            at the start of an epoch once that many steps have passed (and at
            the start of every `fit`). Default 350.
        distribution_alignment: align the table's mean class distribution to
            `class_prior`. Default True.
        class_prior: target class distribution (sums to 1); None: uniform.
        unlabeled_weight: weight of the unlabeled loss. Default 1.
        use_ema: label with the EMA weights (when the model keeps them)
            instead of the current ones. Default False: the EMA (decay
            0.999) averages over about the last 1,000 steps, so in short runs
            it labels with an older model (BENCHMARKS.md measures both).
        batchnorm_steps: 0 (default) labels with the moving BatchNorm
            statistics that training left; N > 0 recomputes the teacher's
            statistics on N batches of 128 clean unlabeled images per
            refresh (with `use_ema=True` the EMA weights have no statistics
            of their own: set N > 0 there). Training batches are mostly
            strongly augmented images; statistics recomputed on clean ones
            do not match what the network learned, and cost the table's
            labels (CIFAR-10 protocol, 3 seeds, BENCHMARKS.md).
        flip_average: average the teacher's prediction with that of the
            mirrored image. Default False.
        weak, strong, flip: views as in `keras_ssl.algorithms.PseudoLabel`
            (labeled images get the weak view; unlabeled ones the strong).
        unlabeled_view: `"strong"` (default) or `"weak"`: the view the
            pseudo-labeled images are trained on. The weak one skips
            RandAugment, most of a step's CPU cost.
        labeled_view: `"weak"` (default) or `"strong"`: the view the labeled
            images are trained on (also in a supervised warm-up `fit` of the
            same model). The strong view makes the warm-up's model less
            confident, so its first tables select few images (see
            `min_selected`).
        min_selected: the least share of the unlabeled images the batches
            are drawn from. When fewer reach `threshold`, the most confident
            rows make up the share and the unconfident ones among them are
            masked out of the loss: a handful of confident images (often of
            one class) is then not drawn over and over. Default 0.1; 0 draws
            from the confident images only, however few.
    """

    views = ("strong",)
    labeled_view = "weak"
    metric_names = ("mask_rate",)
    uses_table = True

    def __init__(self, threshold=0.8, refresh_every=350, distribution_alignment=True,
                 class_prior=None, unlabeled_weight=1.0, use_ema=False, batchnorm_steps=0,
                 flip_average=False, weak=None, strong=None, flip=True,
                 unlabeled_view="strong", labeled_view="weak", min_selected=0.1):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not (
            0.0 <= float(threshold) < 1.0
        ):
            raise ValueError(
                f"SelfTraining(threshold=...) must be in [0, 1); received {threshold!r}."
            )
        if isinstance(refresh_every, bool) or int(refresh_every) < 1:
            raise ValueError(
                f"SelfTraining(refresh_every=...) must be an integer >= 1 (steps); "
                f"received {refresh_every!r}."
            )
        if float(unlabeled_weight) < 0:
            raise ValueError(
                f"SelfTraining(unlabeled_weight=...) must be >= 0; received "
                f"{unlabeled_weight!r}."
            )
        if class_prior is not None:
            prior = np.asarray(class_prior, dtype="float64").reshape(-1)
            if prior.size < 2 or np.any(prior < 0) or not np.isclose(prior.sum(), 1.0):
                raise ValueError(
                    "SelfTraining(class_prior=...) must be non-negative and sum to 1, "
                    f"one entry per class; received {class_prior!r}."
                )
            class_prior = [float(p) for p in prior]
        self.threshold = float(threshold)
        self.refresh_every = int(refresh_every)
        self.distribution_alignment = bool(distribution_alignment)
        self.class_prior = class_prior
        self.unlabeled_weight = float(unlabeled_weight)
        self.use_ema = bool(use_ema)
        self.batchnorm_steps = int(batchnorm_steps)
        self.flip_average = bool(flip_average)
        self.weak = deserialize_view(weak)
        self.strong = deserialize_view(strong)
        self.flip = bool(flip)
        for argument, value in (("unlabeled_view", unlabeled_view),
                                ("labeled_view", labeled_view)):
            if value not in ("strong", "weak"):
                raise ValueError(
                    f"SelfTraining({argument}=...) must be 'strong' or 'weak'; received "
                    f"{value!r}."
                )
        if isinstance(min_selected, bool) or not isinstance(min_selected, numbers.Real) or not (
            0.0 <= float(min_selected) <= 1.0
        ):
            raise ValueError(
                f"SelfTraining(min_selected=...) must be a share in [0, 1]; received "
                f"{min_selected!r}."
            )
        self.unlabeled_view = unlabeled_view
        self.labeled_view = labeled_view  # the model reads it: the labeled images' view
        self.min_selected = float(min_selected)

    @classmethod
    def for_steps(cls, steps, **kwargs):
        """About ten refreshes over a run of `steps` steps (at least every 50)."""
        if steps and "refresh_every" not in kwargs:
            kwargs["refresh_every"] = max(50, int(steps) // 10)
        return cls(**kwargs)

    def build_views(self, value_range):
        weak = self.weak or augment.weak_augmentation(value_range, flip=self.flip)
        strong = self.strong or augment.strong_augmentation(value_range, flip=self.flip)
        if self.unlabeled_view == "weak":
            strong = weak  # the cheaper noise: no RandAugment on the CPU
        return {"weak": weak, "strong": strong}

    def table_targets(self, probs):
        """The table's rows from the teacher's probabilities over the whole set (numpy)."""
        probs = np.asarray(probs, dtype="float64")
        if self.distribution_alignment:
            prior = (np.full(probs.shape[1], 1.0 / probs.shape[1]) if self.class_prior is None
                     else np.asarray(self.class_prior))
            if len(prior) != probs.shape[1]:
                raise ValueError(
                    f"SelfTraining(class_prior=...) has {len(prior)} entries but the model "
                    f"predicts {probs.shape[1]} classes."
                )
            probs = probs * (prior / np.maximum(probs.mean(axis=0), 1e-6))
            probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
        return probs.astype("float32")

    def table_selection(self, rows):
        """Images the unlabeled batches are drawn from (numpy boolean mask).

        The confident rows; if they are fewer than `min_selected` of the set,
        the most confident rows up to that share (the loss masks the
        unconfident ones).
        """
        confidence = np.asarray(rows).max(axis=1)
        selected = confidence >= self.threshold
        floor = min(len(confidence), int(np.ceil(self.min_selected * len(confidence))))
        if selected.sum() < floor:
            selected = np.zeros(len(confidence), dtype=bool)
            selected[np.argsort(-confidence, kind="stable")[:floor]] = True
        return selected

    def unlabeled_loss(self, logits, teacher_logits, step):
        del step
        probs = ops.softmax(teacher_logits["table"])
        confidence = ops.max(probs, axis=-1)
        labels = ops.argmax(probs, axis=-1)
        mask = losses.threshold_mask(confidence, self.threshold)
        loss = losses.masked_cross_entropy(logits["strong"], labels, mask)
        return UnlabeledLoss(self.unlabeled_weight * loss,
                             {"mask_rate": ops.mean(mask)}, labels)

    def get_config(self):
        return {
            "threshold": self.threshold,
            "refresh_every": self.refresh_every,
            "distribution_alignment": self.distribution_alignment,
            "class_prior": self.class_prior,
            "unlabeled_weight": self.unlabeled_weight,
            "use_ema": self.use_ema,
            "batchnorm_steps": self.batchnorm_steps,
            "flip_average": self.flip_average,
            "weak": serialize_view(self.weak),
            "strong": serialize_view(self.strong),
            "flip": self.flip,
            "unlabeled_view": self.unlabeled_view,
            "labeled_view": self.labeled_view,
            "min_selected": self.min_selected,
        }
