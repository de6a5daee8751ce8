"""Small helpers shared by the callbacks: reading model state safely."""

from keras import ops


def is_semi_supervised(model):
    from keras_ssl.model import SemiSupervisedModel

    return isinstance(model, SemiSupervisedModel)


def unlabeled_loss_scale(model):
    """The value of `model.unlabeled_loss_scale` as a float, or None."""
    variable = getattr(model, "unlabeled_loss_scale", None)
    if variable is None:
        return None
    return float(ops.convert_to_numpy(variable))


def optimizer_steps(model):
    """Optimizer steps done so far (`optimizer.iterations`), or None."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or getattr(optimizer, "iterations", None) is None:
        return None
    try:
        return int(ops.convert_to_numpy(optimizer.iterations))
    except (TypeError, ValueError, AttributeError):  # purged JAX state
        return None


def print_msg(message):
    """Print as Keras's own callbacks do (honours absl logging when enabled)."""
    from keras_ssl import _compat

    _compat.print_msg(message)
