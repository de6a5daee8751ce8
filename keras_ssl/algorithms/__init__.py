"""SSL algorithms: small compositions of `keras_ssl.losses`."""

from keras_ssl.algorithms.base import Algorithm
from keras_ssl.algorithms.fixmatch import FixMatch
from keras_ssl.algorithms.freematch import FreeMatch
from keras_ssl.algorithms.mean_teacher import MeanTeacher

__all__ = ["Algorithm", "FixMatch", "FreeMatch", "MeanTeacher"]
