"""Read and check what `fit` receives, once, and build the raw sources.

Data flows one way:

    fit's arguments -> `read` (`reading.py`; checks every value it reads
    with `keras_ssl.checks`) -> `FitInputs`: the labeled source (batched
    `(x, y[, sample_weight])`, raw pixels), the unlabeled stream (shuffled,
    repeated, batched at `unlabeled_ratio * batch_size`) or, for an
    algorithm with a pseudo-label table, the unlabeled `ImageStore`; the
    first labeled batch, the pixel range and the validation data
    -> `SemiSupervisedModel` prepares itself from the first batch
    -> `keras_ssl.augment.attach_views` maps the views over the source
    -> `keras.Model.fit`.

One module per kind of source: `arrays.py` (numpy, through Keras's data
adapters, or `ArraySource` without TensorFlow), `streams.py` (`tf.data`,
`PyDataset`, generators), `store.py` (any finite source read into memory
for a pseudo-label table, image files included), `guard.py` (bad values
found in streams after their first batch), `batches.py` (plain batches of
images for BatchNorm warm-up), `common.py` (what kind an input is).

Arrays are checked whole. Streams are checked on their first batch; further
down, a bad value (NaN or Inf, pixels outside the range, a label outside the
classes) is skipped: an unlabeled image is dropped from the stream, a labeled
example gets sample weight 0, and a warning at the end of the epoch says how
many (`StreamGuard`). Images read into a store are checked whole, as arrays.
"""

from keras_ssl.data.arrays import ArraySource
from keras_ssl.data.batches import iterate_batches
from keras_ssl.data.common import (
    DEFAULT_BATCH_SIZE,
    describe,
    input_kind,
    is_tf_dataset,
    is_zipped,
    tensorflow_available,
    tf,
)
from keras_ssl.data.guard import SkipReport, StreamGuard
from keras_ssl.data.reading import FitInputs, read
from keras_ssl.data.store import (
    DEFAULT_MEMORY_GB,
    ImageStore,
    StoreError,
    can_store,
    split_zipped,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MEMORY_GB",
    "ArraySource",
    "FitInputs",
    "ImageStore",
    "SkipReport",
    "StoreError",
    "StreamGuard",
    "can_store",
    "describe",
    "input_kind",
    "is_tf_dataset",
    "is_zipped",
    "iterate_batches",
    "read",
    "split_zipped",
    "tensorflow_available",
    "tf",
]
