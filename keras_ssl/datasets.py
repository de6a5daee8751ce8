"""Ready-made splits of public data sets, for examples, benchmarks and the demo.

`load_cifar10(path=None)` reads an npz with the layout of
`keras.datasets.cifar10.load_data()` (`x_train`, `y_train`, `x_test`, `y_test`)
when given a path, and downloads through `keras.datasets` otherwise. The
splits carve validation images from the training images; the test images are
only returned, for one final evaluation.
"""

import keras
import numpy as np

CIFAR_LABELED_POOL = (0, 5000)      # the tutorial's labeled slice of its shuffle
CIFAR_UNLABELED = (5000, 25000)     # the tutorial's unlabeled slice
CIFAR_VALIDATION = (25000, 30000)   # carved from training data, never the test set


def load_cifar10(path=None):
    """`(x_train, y_train, x_test, y_test)` uint8/int64 from an npz or keras.datasets."""
    if path:
        with np.load(path) as f:
            return f["x_train"], f["y_train"].reshape(-1), f["x_test"], f["y_test"].reshape(-1)
    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    return x_train, y_train.reshape(-1), x_test, y_test.reshape(-1)


def tutorial_indices(n_train=50000):
    """The tutorial's split: `default_rng(seed=0).shuffle` over the training indices."""
    indices = np.arange(n_train)
    np.random.default_rng(seed=0).shuffle(indices)
    return indices


def balanced_first(indices, labels, per_class):
    """The first `per_class` indices of each class, in the given order."""
    chosen = np.concatenate([indices[labels[indices] == c][:per_class]
                             for c in np.unique(labels)])
    return np.sort(chosen)


def cifar10_split(path=None, labels=1000, unlabeled=20000, validation=True):
    """CIFAR-10 split from the tutorial's shuffle.

    Returns a dict with `x_lab, y_lab, x_unl, y_unl, x_val, y_val, x_test, y_test`.
    `labels` images, balanced per class, come from the tutorial's labeled
    slice (its first 5,000 shuffled images: `labels=5000` is exactly that
    slice); the unlabeled images are the next `unlabeled` of the shuffle;
    validation is indices 25,000-30,000 of the shuffle.
    """
    x_train, y_train, x_test, y_test = load_cifar10(path)
    order = tutorial_indices(len(x_train))
    pool = order[CIFAR_LABELED_POOL[0]:CIFAR_LABELED_POOL[1]]
    lab = pool if labels >= len(pool) else balanced_first(pool, y_train, labels // 10)
    unl = order[CIFAR_UNLABELED[0]:CIFAR_UNLABELED[0] + unlabeled]
    val = order[CIFAR_VALIDATION[0]:CIFAR_VALIDATION[1]]
    split = {"x_lab": x_train[lab], "y_lab": y_train[lab],
             "x_unl": x_train[unl], "y_unl": y_train[unl],
             "x_test": x_test, "y_test": y_test}
    if validation:
        split.update(x_val=x_train[val], y_val=y_train[val])
    return split


def digits_split(labels=20, seed=0):
    from keras_ssl.demo import load_digits_split

    x_lab, y_lab, x_unl, y_unl, x_test, y_test = load_digits_split(labels // 10, seed)
    return {"x_lab": x_lab, "y_lab": y_lab, "x_unl": x_unl, "y_unl": y_unl,
            "x_test": x_test, "y_test": y_test}
