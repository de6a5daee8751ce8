"""The benchmarks' data splits and models: they live in the package now."""

from keras_ssl.datasets import (  # noqa: F401
    CIFAR_LABELED_POOL,
    CIFAR_UNLABELED,
    CIFAR_VALIDATION,
    balanced_first,
    cifar10_split,
    digits_split,
    load_cifar10,
    tutorial_indices,
)
from keras_ssl.models import cnn6  # noqa: F401
