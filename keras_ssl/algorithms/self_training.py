"""Self-training: a table of the teacher's pseudo-labels, refreshed every few steps."""

import math
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


def _auto_or_count(argument, value, minimum, unit):
    """`value` as "auto" or an int >= `minimum`; a ValueError naming `argument` else."""
    if value == "auto":
        return value
    if isinstance(value, (bool, str)) or int(value) < minimum:
        raise ValueError(
            f"SelfTraining({argument}=...) must be 'auto' or an integer >= {minimum} "
            f"({unit}); received {value!r}."
        )
    return int(value)


@register("self_training")
class SelfTraining(Algorithm):
    """Self-training with a pseudo-label table (Noisy-Student style).

    Every few steps (`refresh_every`) the teacher (the current weights, or
    with `use_ema=True` the model's EMA of them) labels the whole unlabeled
    set in inference mode, and the table keeps its class probabilities. In
    between, each step draws its unlabeled batch from the table and trains
    the student on a strongly augmented view of the images towards their
    stored hard pseudo-labels. No view is run only to make targets, so a
    step costs about a supervised step on `1 + unlabeled_ratio` times the
    images (FixMatch also runs a weak view of every unlabeled image).

    With `weighting="threshold"` (the default) batches are drawn from the
    rows whose stored confidence reaches `threshold` (see `min_selected`),
    each weighted 1. With `weighting="soft"` every image is drawn, and its
    pseudo-label weighted by its stored confidence `c`: 1 at `threshold` or
    above, else SoftMatch's truncated Gaussian, 1 at or above the batch's
    mean confidence `mu` and `exp(-(c - mu)^2 / (2 var / n_sigma^2))` below
    it (`var` the batch's variance of the confidence). docs/experiments.md
    compares the two on digits and on the CIFAR-10 protocol. Either way,
    with `balance_classes` (the default), each pseudo-label class is drawn
    about equally often, as Noisy Student balances its data: confident
    images of easy classes would otherwise outnumber the hard ones.

    Distribution alignment (on by default) rescales the table so that the
    mean predicted class distribution over the unlabeled set is uniform (or
    `class_prior`): a teacher biased towards a few classes then does not
    flood training with them.

    It is the library's default (`SemiSupervisedModel(model)`) whenever the
    unlabeled images are finite: an array, or a stream that `fit` reads
    into memory once (the table needs them all). Its first table waits
    until the model gets `min_labeled_accuracy` of its labeled batches right
    (a warm-up judged from the data: until then the steps train on the
    labeled images only), so it works from scratch and on a new head; a
    supervised `fit` first (`keras_ssl.fit_two_phase`, or a `fit` without
    `unlabeled`) does the same warm-up at the cost of supervised steps.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.SelfTraining(), unlabeled_ratio=3)
    ssl.compile(optimizer="adam", metrics=["accuracy"])
    ssl.fit(x_labeled, y_labeled, epochs=3, steps_per_epoch=200)   # supervised warm-up
    ssl.fit(x_labeled, y_labeled, unlabeled=x_unlabeled, epochs=10, steps_per_epoch=200)
    ssl.pseudo_label_table.refreshes   # how often the table was made
    ```

    Args:
        threshold: stored confidence (after alignment) at which a
            pseudo-label is trained on (`weighting="threshold"`) or gets the
            full weight ("soft"). Default 0.8.
        refresh_every: steps between refreshes of the table (also in the
            middle of an epoch, and always at the start of a `fit`).
            Default "auto": as often as labelling the unlabeled set costs
            about a tenth of the training compute (`REFRESH_COST`; a forward
            pass taken as a third of a training step per image): every
            `ceil(n_unlabeled / (0.3 * images_per_step))` steps, 521 for
            20,000 images and batches of 32 + 96, 26 for 1,237 images and 20
            + 140; a quarter of that while fewer than `min_selected` of the
            table reach `threshold` (its drawn images are then mostly masked
            out, and labelling again with the improving model pays more).
        distribution_alignment: align the table's mean class distribution to
            `class_prior`. Default True.
        class_prior: target class distribution (sums to 1); None: uniform.
        unlabeled_weight: weight of the unlabeled loss. Default 1.
        use_ema: label with the EMA weights (when the model keeps them)
            instead of the current ones. Default False: the EMA (decay
            0.999) averages over about the last 1,000 steps, so in short runs
            it labels with an older model (docs/experiments.md measures both).
        batchnorm_steps: BatchNorm statistics of the teacher. 0 labels with
            the moving statistics that training left; N > 0 recomputes them
            on N batches of 128 clean unlabeled images at every refresh (with
            `use_ema=True` the EMA weights have no statistics of their own:
            set N > 0 there). Default "auto": 20 batches while the moving
            statistics are young (they still hold more than 1 % of their
            initial values: `momentum ** step > 0.01`, the first 459 steps of
            a model with Keras's momentum 0.99), then 0. Young moving
            statistics still hold much of their initial values and label
            badly (digits from scratch, docs/experiments.md); later, statistics
            recomputed on clean images do not match training batches that
            are mostly strong views and cost the labels (CIFAR-10: 2.75
            points, 3 seeds).
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
        min_selected: with `weighting="threshold"`, the least share of the
            unlabeled images the batches are drawn from. When fewer reach
            `threshold`, the most confident rows make up the share and the
            unconfident ones among them are masked out of the loss: a
            handful of confident images (often of one class) is then not
            drawn over and over. Default 0.1; 0 draws from the confident
            images only, however few.
        weighting: `"threshold"` (default) or `"soft"`, above.
        balance_classes: draw each pseudo-label class equally often (as
            Noisy Student balances its data): an image of the selected rows
            is drawn with a weight inversely proportional to the number of
            selected rows of its pseudo-label class, a class with fewer than
            a quarter of its fair share counted as a quarter (so none of its
            images is drawn more than four times as often as a balanced
            class's). Default True: on the CIFAR-10 protocol the confident
            rows per class differed up to fourfold once the first tables were
            past, and the balanced draw scored 0.41 points more on average
            (3 seeds; per seed -0.96 to +1.18, docs/experiments.md).
        n_sigma: width of the soft weights' Gaussian in standard deviations
            (larger: doubtful pseudo-labels weigh less). Default 2.
        min_labeled_accuracy: the warm-up and the guard, judged from the
            labeled images. The first table is made once the model gets at
            least this share of its labeled training batches right
            (`labeled_accuracy` in the logs, over the last 20 steps,
            `CHECK_EVERY`); until then the unlabeled images are not trained
            on, so a model that has not yet learned the classes (a new head
            on a pretrained backbone, a model from scratch) does not label
            them. If the share later falls more than 0.1 (`GUARD_MARGIN`)
            under it, the table is set aside until it recovers. Default 0.6
            (BENCHMARKS.md, "Transfer with the default"); 0 makes the first
            table at the first step.
    """

    views = ("strong",)
    labeled_view = "weak"
    metric_names = ("mask_rate",)
    uses_table = True

    def __init__(self, threshold=0.8, refresh_every="auto", distribution_alignment=True,
                 class_prior=None, unlabeled_weight=1.0, use_ema=False,
                 batchnorm_steps="auto", flip_average=False, weak=None, strong=None,
                 flip=True, unlabeled_view="strong", labeled_view="weak", min_selected=0.1,
                 weighting="threshold", n_sigma=2.0, balance_classes=True,
                 min_labeled_accuracy=0.6):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not (
            0.0 <= float(threshold) < 1.0
        ):
            raise ValueError(
                f"SelfTraining(threshold=...) must be in [0, 1); received {threshold!r}."
            )
        if weighting not in ("soft", "threshold"):
            raise ValueError(
                f"SelfTraining(weighting=...) must be 'soft' or 'threshold'; received "
                f"{weighting!r}."
            )
        if isinstance(n_sigma, bool) or not isinstance(n_sigma, numbers.Real) or not (
            float(n_sigma) > 0
        ):
            raise ValueError(f"SelfTraining(n_sigma=...) must be > 0; received {n_sigma!r}.")
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
        self.refresh_every = _auto_or_count("refresh_every", refresh_every, 1, "steps")
        self.distribution_alignment = bool(distribution_alignment)
        self.class_prior = class_prior
        self.unlabeled_weight = float(unlabeled_weight)
        self.use_ema = bool(use_ema)
        self.batchnorm_steps = _auto_or_count("batchnorm_steps", batchnorm_steps, 0, "batches")
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
        self.weighting = weighting
        self.n_sigma = float(n_sigma)
        self.balance_classes = bool(balance_classes)
        if isinstance(min_labeled_accuracy, bool) or not isinstance(
            min_labeled_accuracy, numbers.Real
        ) or not (0.0 <= float(min_labeled_accuracy) <= 1.0):
            raise ValueError(
                "SelfTraining(min_labeled_accuracy=...) must be a share in [0, 1]; received "
                f"{min_labeled_accuracy!r}."
            )
        self.min_labeled_accuracy = float(min_labeled_accuracy)

    # `refresh_every="auto"`: labelling the set may cost about this share of
    # the training compute (a forward pass costs about a third of a step's
    # forward and backward pass per image).
    REFRESH_COST = 0.1
    # ... and this share of that interval while the table is unconfident.
    YOUNG_TABLE_SHARE = 0.25
    # `batchnorm_steps="auto"`: batches of the recomputation while the moving
    # statistics still hold more than `YOUNG` of their initial values.
    AUTO_BATCHNORM_STEPS = 20
    YOUNG = 0.01
    # `balance_classes`: a class's pool counts as at least this share of its
    # fair share (selected rows / classes) in the draw weights.
    BALANCE_FLOOR = 0.25
    # `min_labeled_accuracy`: steps between two looks at the labeled accuracy,
    # and how far under the level it may fall before the table is set aside.
    CHECK_EVERY = 20
    GUARD_MARGIN = 0.1

    def table_ready(self, labeled_accuracy, in_use):
        """Whether the table should be in use, given the labeled accuracy of
        the last steps (None: not measured yet) and whether it is in use now."""
        if self.min_labeled_accuracy <= 0:
            return True
        if labeled_accuracy is None:
            return in_use
        level = self.min_labeled_accuracy - (self.GUARD_MARGIN if in_use else 0.0)
        return labeled_accuracy >= level

    def refresh_interval(self, num_images, images_per_step, rows=None):
        """Steps between refreshes: `refresh_every`, or with "auto" the fewest
        steps for which labelling `num_images` costs at most `REFRESH_COST`
        of training on `images_per_step` images a step; a quarter of that
        (`YOUNG_TABLE_SHARE`) while fewer than `min_selected` of the table's
        `rows` reach `threshold`: most drawn images are then masked out, so
        the unlabeled half of each step is mostly wasted and labelling again
        with the improving model is the better use of the compute."""
        if self.refresh_every != "auto":
            return self.refresh_every
        steps = max(1, math.ceil(num_images / (3.0 * self.REFRESH_COST * images_per_step)))
        if rows is not None and self.weighting == "threshold" and len(rows):
            confident = float(np.mean(np.asarray(rows).max(axis=1) >= self.threshold))
            if confident < self.min_selected:
                steps = max(1, math.ceil(self.YOUNG_TABLE_SHARE * steps))
        return steps

    def refresh_batchnorm_steps(self, model, step):
        """Batches to recompute the teacher's BatchNorm statistics on at `step`.

        `batchnorm_steps`, or with "auto" `AUTO_BATCHNORM_STEPS` while the
        moving statistics of `model`'s BatchNormalization layers are young
        (`momentum ** step > YOUNG`: with Keras's 0.99 the first 459 steps),
        else 0 (the moving statistics training left).
        """
        if self.batchnorm_steps != "auto":
            return self.batchnorm_steps
        from keras_ssl.batchnorm import batchnorm_layers

        momenta = [float(layer.momentum) for layer in batchnorm_layers(model)]
        if not momenta or max(momenta) ** int(step) <= self.YOUNG:
            return 0
        return self.AUTO_BATCHNORM_STEPS

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
        """Images the unlabeled batches are drawn from (numpy).

        With `weighting="soft"` every image. With "threshold" the confident
        rows; if they are fewer than `min_selected` of the set, the most
        confident rows up to that share (the loss masks the unconfident
        ones). A boolean mask (drawn uniformly), or with `balance_classes`
        draw weights, equal per pseudo-label class.
        """
        rows = np.asarray(rows)
        confidence = rows.max(axis=1)
        if self.weighting == "soft":
            selected = np.ones(len(confidence), dtype=bool)
        else:
            selected = confidence >= self.threshold
            floor = min(len(confidence), int(np.ceil(self.min_selected * len(confidence))))
            if selected.sum() < floor:
                selected = np.zeros(len(confidence), dtype=bool)
                selected[np.argsort(-confidence, kind="stable")[:floor]] = True
        if not self.balance_classes or not selected.any():
            return selected
        classes = rows.argmax(axis=1)
        counts = np.bincount(classes[selected], minlength=rows.shape[1])
        pool = np.maximum(counts, self.BALANCE_FLOOR * selected.sum() / rows.shape[1])
        return np.where(selected, 1.0 / pool[classes], 0.0)

    def unlabeled_loss(self, logits, teacher_logits, step):
        del step
        probs = ops.softmax(teacher_logits["table"])
        confidence = ops.max(probs, axis=-1)
        labels = ops.argmax(probs, axis=-1)
        mask = losses.threshold_mask(confidence, self.threshold)
        if self.weighting == "soft":
            mask = ops.maximum(mask, losses.truncated_gaussian_weight(
                confidence, ops.mean(confidence), ops.var(confidence), self.n_sigma))
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
            "weighting": self.weighting,
            "n_sigma": self.n_sigma,
            "balance_classes": self.balance_classes,
            "min_labeled_accuracy": self.min_labeled_accuracy,
        }
