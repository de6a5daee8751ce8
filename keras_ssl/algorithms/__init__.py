"""SSL algorithms: small objects that turn outputs on views into losses.

Every module of this package is imported here, and each algorithm registers
itself (`@register("name")`): adding one is adding its file (and its tests,
which run over `names()`). `get("fixmatch", threshold=0.8)` builds one by
name; `names()` lists them.
"""

import importlib
import pkgutil

from keras_ssl.algorithms.base import (
    DEFAULT,
    STREAM_DEFAULT,
    Algorithm,
    UnlabeledLoss,
    default,
    get,
    names,
    register,
)
from keras_ssl.algorithms.fixmatch import FixMatch
from keras_ssl.algorithms.flexmatch import FlexMatch
from keras_ssl.algorithms.freematch import FreeMatch
from keras_ssl.algorithms.mean_teacher import MeanTeacher
from keras_ssl.algorithms.pseudo_label import PseudoLabel
from keras_ssl.algorithms.self_training import SelfTraining
from keras_ssl.algorithms.softmatch import SoftMatch

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "DEFAULT",
    "STREAM_DEFAULT",
    "Algorithm",
    "FixMatch",
    "FlexMatch",
    "FreeMatch",
    "MeanTeacher",
    "PseudoLabel",
    "SelfTraining",
    "SoftMatch",
    "UnlabeledLoss",
    "default",
    "get",
    "names",
    "register",
]
