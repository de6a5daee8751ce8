"""Callbacks for SSL runs: EMA teacher, exact BatchNorm warm-up, phase switching.

All of them work beside Keras's own callbacks (EarlyStopping, ModelCheckpoint,
BackupAndRestore, ReduceLROnPlateau, TensorBoard, CSVLogger) in one `fit`,
on TensorFlow, JAX and PyTorch. docs/callbacks.md shows them together.
"""

from keras_ssl.batchnorm import batchnorm_layers, recompute_batchnorm_statistics
from keras_ssl.callbacks.batchnorm_warmup import BatchNormWarmup
from keras_ssl.callbacks.ema_teacher import EMATeacher
from keras_ssl.callbacks.phase_switch import PlateauPhaseSwitch
from keras_ssl.callbacks.time_decay import CosineDecayByTime
from keras_ssl.callbacks.time_limit import TimeLimit

__all__ = [
    "BatchNormWarmup",
    "CosineDecayByTime",
    "EMATeacher",
    "PlateauPhaseSwitch",
    "TimeLimit",
    "batchnorm_layers",
    "recompute_batchnorm_statistics",
]
