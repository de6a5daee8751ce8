"""docs/pretrained.md: every snippet runs as written (weights=None, stand-in data)."""

import os
import re

import keras
import numpy as np
import pytest

import keras_ssl

pytestmark = pytest.mark.slow

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "pretrained.md")


def _blocks():
    with open(DOC) as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_the_page_has_the_patterns():
    blocks = _blocks()
    joined = "\n".join(blocks)
    for pattern in ("MobileNetV2", "EfficientNetB0", "ResNet50", "weights=path",
                    "backbone.trainable = False", "keras_ssl.models.unfreeze(backbone)",
                    "keras_hub"):
        assert pattern in joined, pattern
    assert len(blocks) >= 6


@pytest.fixture
def eager():
    """The snippets' one- and two-step fits without tracing the large
    backbones' training graphs (the graph step is tested on small models)."""
    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(False)


def test_keras_applications_snippets_run_in_order(tmp_path, monkeypatch, eager):
    monkeypatch.chdir(tmp_path)
    # The default's first table recomputes the large backbones' BatchNorm
    # statistics on 20 batches; 2 are enough to run the path on stand-in data.
    monkeypatch.setattr(keras_ssl.SelfTraining, "AUTO_BATCHNORM_STEPS", 2)
    namespace = {}
    blocks = [b for b in _blocks() if "keras_hub" not in b]
    for block in blocks:
        exec(compile(block, DOC, "exec"), namespace)  # noqa: S102 - the docs' own code
    # The fine-tuning snippet ends with the backbone trainable, its BatchNorm
    # layers frozen, and an EMA that covers it (frozen in the first fit,
    # trained in the second).
    ssl, backbone = namespace["ssl"], namespace["backbone"]
    assert backbone.trainable
    frozen = namespace["frozen"]
    assert frozen and all(not layer.trainable for layer in frozen)
    # weights=None: the statistics were never trained on (mean 0, variance 1),
    # neither in the frozen fit nor in fine-tuning.
    for layer in frozen:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.moving_mean), 0.0)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.moving_variance), 1.0)
    assert len(ssl.teacher_weights) == len(ssl.teacher_sources) > len(
        ssl.model.trainable_variables)


def test_keras_hub_snippet_runs():
    pytest.importorskip("keras_hub")
    namespace = {}
    blocks = _blocks()
    exec(compile(blocks[0], DOC, "exec"), namespace)  # noqa: S102
    hub = next(b for b in blocks if "keras_hub" in b)
    exec(compile(hub, DOC, "exec"), namespace)  # noqa: S102
    assert namespace["ssl"].from_logits
