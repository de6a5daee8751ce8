"""keras-ssl: semi-supervised learning for Keras 3 inside `model.fit`."""

from keras_ssl import (
    algorithms,
    augment,
    callbacks,
    datasets,
    folders,
    losses,
    models,
    runner,
)
from keras_ssl.algorithms import (
    Algorithm,
    FixMatch,
    FlexMatch,
    FreeMatch,
    MeanTeacher,
    SelfTraining,
    SoftMatch,
)
from keras_ssl.checks import InputError
from keras_ssl.model import SemiSupervisedModel
from keras_ssl.recipes import TwoPhaseReport, fit_two_phase

__version__ = "0.2.0"

__all__ = [
    "Algorithm",
    "FixMatch",
    "FlexMatch",
    "FreeMatch",
    "InputError",
    "MeanTeacher",
    "SelfTraining",
    "SemiSupervisedModel",
    "SoftMatch",
    "TwoPhaseReport",
    "algorithms",
    "augment",
    "callbacks",
    "datasets",
    "fit_two_phase",
    "folders",
    "losses",
    "models",
    "runner",
]
