"""`ImageStore`: the unlabeled images in memory, for a pseudo-label table.

A table keeps a pseudo-label for every unlabeled image and draws batches by
index, so it needs random access to the images. Arrays have it; every other
finite source is read once into memory, one reader per kind, as Keras's
`trainers/data_adapters/` has one adapter per input kind:

    numpy array                        -> kept as it is (no copy)
    finite tf.data.Dataset             -> read once (batched or not)
    keras.utils.PyDataset              -> read once (its `len` batches)
    generator, iterable, DataLoader    -> read once, until it ends
    image files (`from_files`)         -> decoded and resized (Pillow, threads)

Images that hold whole numbers in [0, 255] are kept as uint8 (a quarter of
float32's memory; `image_dataset_from_directory` yields such floats). A
source that does not end (`.repeat()`, an endless generator) or that would
take more memory than the budget raises `StoreError`, which says what to do;
`SemiSupervisedModel` then falls back to an algorithm without a table when
the user left the choice to it, and reports the error otherwise.
"""

import math
import sys
import time

import numpy as np
from keras.utils import PyDataset

from keras_ssl import checks
from keras_ssl.checks import InputError
from keras_ssl.data.common import input_kind, is_tf_dataset, is_zipped, tf

DEFAULT_MEMORY_GB = 4.0  # the default budget of one store


class StoreError(InputError):
    """A source cannot be read into an `ImageStore` (endless, or over the budget)."""


class ImageStore:
    """Unlabeled images in memory, indexable by a pseudo-label table.

    Build one with `ImageStore.read(source)` (any finite source `fit` takes
    for `unlabeled`) or `ImageStore.from_files(paths, image_size)`.

    Example:

    ```python
    store = keras_ssl.data.ImageStore.read(unlabeled_dataset, memory_gb=2)
    len(store), store.images.shape, store.kind, store.seconds
    ```

    Args:
        images: numpy array of images `(n, height, width, channels)`.
        kind: where they came from: "array", "dataset", "pydataset",
            "iterable" or "files".
        seconds: time spent reading them.
    """

    def __init__(self, images, kind="array", seconds=0.0):
        self.images = images
        self.kind = kind
        self.seconds = float(seconds)

    def __len__(self):
        return len(self.images)

    @property
    def nbytes(self):
        return int(self.images.nbytes)

    def describe(self):
        shape = "x".join(str(v) for v in self.images.shape[1:])
        text = (f"{len(self)} unlabeled images ({shape}, {self.images.dtype}, "
                f"{self.nbytes / 2 ** 20:.0f} MiB)")
        if self.kind != "array":
            text += f", read from a {_KIND_NAMES[self.kind]} in {self.seconds:.1f} s"
        return text

    # ------------------------------------------------------------ readers

    @classmethod
    def read(cls, source, memory_gb=DEFAULT_MEMORY_GB, verbose=1):
        """Read any finite unlabeled source into memory (arrays are not copied).

        Args:
            source: a numpy array, a finite `tf.data.Dataset` of images
                (batched or not; `(images, ...)` tuples keep the images), a
                `keras.utils.PyDataset`, a generator or iterable of image
                batches (a torch `DataLoader` too).
            memory_gb: the most memory the images may take.
            verbose: 1 shows a progress bar while reading a stream.

        Raises:
            StoreError: the source does not end, or is larger than
                `memory_gb`; the message names the way out.
        """
        kind = input_kind(source, "unlabeled") if not _is_iterable(source) else "iterable"
        budget = float(memory_gb) * 2 ** 30
        if kind == "array":
            images = np.asarray(source)
            if images.nbytes > budget and not isinstance(source, np.ndarray):
                raise _too_large(images.nbytes, memory_gb)
            return cls(images, "array")
        start = time.perf_counter()
        if kind == "dataset":
            batches, total = _dataset_batches(source)
        elif kind == "pydataset":
            batches, total = _pydataset_batches(source)
        elif kind in ("generator", "iterable"):
            batches, total = iter(source), _iterable_length(source)
            kind = "iterable"
        else:
            raise StoreError(f"A {kind} cannot be read into a pseudo-label table.")
        images = _collect(batches, total, budget, memory_gb, kind, verbose)
        return cls(images, kind, time.perf_counter() - start)

    @classmethod
    def from_files(cls, paths, image_size, channels=3, memory_gb=DEFAULT_MEMORY_GB,
                   verbose=1):
        """Decode and resize image files, in threads, with the loader of
        `keras_ssl.folders` (Pillow: PNG, JPEG, BMP, GIF, WebP, TIFF; EXIF
        orientation applied; 16-bit, palette, CMYK and alpha converted).

        Args:
            paths: image file paths.
            image_size: `(height, width)` to resize to (bilinear).
            channels: 1 or 3.
            memory_gb, verbose: as in `read`.
        """
        from keras_ssl import folders

        paths = [str(p) for p in paths]
        height, width = (int(v) for v in image_size)
        need = len(paths) * height * width * int(channels)  # uint8
        if need > float(memory_gb) * 2 ** 30:
            raise _too_large(need, memory_gb)
        start = time.perf_counter()
        progress = _progress(len(paths), "files", verbose)
        images = folders.load_images(paths, (height, width), int(channels),
                                     progress=progress.update)
        progress.done()
        return cls(images, "files", time.perf_counter() - start)


_KIND_NAMES = {"array": "numpy array", "dataset": "tf.data.Dataset",
               "pydataset": "PyDataset", "iterable": "generator or iterable",
               "files": "folder of image files"}


def can_store(source):
    """Whether `source` is finite as far as can be told without reading it.

    Arrays, finite datasets, `PyDataset`s with a length and sized iterables
    are; infinite datasets and endless `PyDataset`s are not. A generator
    cannot be told without reading it: True (reading it finds out).
    """
    if source is None:
        return False
    if is_tf_dataset(source):
        return _finite(source) is not None
    if isinstance(source, PyDataset):
        try:
            return len(source) is not None
        except TypeError:
            return False
    return True


def split_zipped(dataset):
    """`(labeled, unlabeled)` of `tf.data.Dataset.zip((labeled, unlabeled))`.

    The unlabeled part comes back finite where it can be (a `.repeat()`
    around a finite dataset is taken off: the table repeats by drawing);
    None when the zipped dataset is not a plain zip.
    """
    if not is_zipped(dataset):
        return None
    parts = getattr(dataset, "_datasets", None)  # tf.data's _ZipDataset
    if not isinstance(parts, tuple) or len(parts) != 2:
        return None
    labeled, unlabeled = parts
    return labeled, _finite(unlabeled) or unlabeled


# Transformations that an endless dataset may have after its `.repeat()`
# and that the table does not need: it batches, shuffles and repeats by
# drawing. Anything else (a `map` after the repeat) keeps the dataset out.
_PASS_THROUGH = ("_RepeatDataset", "_BatchDataset", "_ParallelBatchDataset",
                 "_ShuffleDataset", "_PrefetchDataset", "_UnbatchDataset")


def _finite(dataset):
    """A finite dataset of the same images: `dataset` itself, or for an endless
    one the finite dataset under its `.repeat()` (`.shuffle().repeat().batch()`
    and the like), or None."""
    infinite = int(tf.data.INFINITE_CARDINALITY)
    if int(dataset.cardinality()) == int(tf.data.UNKNOWN_CARDINALITY) and _repeats(dataset):
        return None  # e.g. `.repeat().filter(...)`: endless, its length unknown
    while int(dataset.cardinality()) == infinite:
        if type(dataset).__name__ not in _PASS_THROUGH:
            return None
        dataset = getattr(dataset, "_input_dataset", None)  # tf.data's unary datasets
        if dataset is None:
            return None
    return dataset


def _repeats(dataset):
    """Whether an endless `.repeat()` lies under `dataset` (unary datasets only)."""
    while dataset is not None:
        if int(dataset.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            return True
        dataset = getattr(dataset, "_input_dataset", None)
    return False


def _is_iterable(source):
    """A sized or plain iterable that is none of fit's other kinds (e.g. a DataLoader)."""
    if source is None or is_tf_dataset(source) or isinstance(source, PyDataset):
        return False
    if checks.is_array(source) or isinstance(source, (list, tuple, str, bytes, dict)):
        return False
    return hasattr(source, "__iter__") and not hasattr(source, "__next__")


def _images_of(element):
    """The images of one element: the element, or the first item of a tuple/dict."""
    if isinstance(element, dict):
        element = next(iter(element.values()))
    if isinstance(element, (tuple, list)):
        element = element[0]
    return checks.numpy(element)


def _dataset_batches(dataset):
    finite = _finite(dataset)
    if finite is None:
        raise StoreError(
            "The unlabeled tf.data.Dataset is infinite (it repeats), so its images cannot "
            "be read into a pseudo-label table. Pass the dataset before .repeat(), or "
            "choose an algorithm without a table (keras_ssl.FixMatch)."
        )
    cardinality = int(finite.cardinality())
    spec = finite.element_spec
    images_spec = spec[0] if isinstance(spec, tuple) else spec
    if isinstance(images_spec, dict):
        images_spec = next(iter(images_spec.values()))
    batched = len(images_spec.shape) == 4
    if not batched:
        finite = finite.batch(256)
        cardinality = math.ceil(cardinality / 256) if cardinality >= 0 else cardinality
    total = cardinality if cardinality >= 0 else None
    return (e for e in finite.prefetch(2).as_numpy_iterator()), total


def _pydataset_batches(dataset):
    try:
        count = len(dataset)
    except TypeError:
        count = None
    if count is None:
        raise StoreError(
            "The unlabeled PyDataset has no length (it is endless), so its images cannot "
            "be read into a pseudo-label table. Give it a __len__ (num_batches), or "
            "choose an algorithm without a table (keras_ssl.FixMatch)."
        )
    return (dataset[i] for i in range(count)), count


def _iterable_length(source):
    try:
        return len(source)
    except TypeError:
        return None


def _collect(batches, total, budget, memory_gb, kind, verbose):
    """Read every batch, checking the budget as the images arrive."""
    chunks, size = [], 0
    progress = _progress(total, "batches", verbose)
    for count, element in enumerate(batches, 1):
        images = _images_of(element)
        if images.ndim == 3:  # a single image (unbatched generator)
            images = images[None]
        images = _compact(images)
        size += images.nbytes
        if size > budget:
            progress.done()
            raise _too_large(size, memory_gb, partial=True, kind=kind)
        chunks.append(images)
        progress.update(count)
    progress.done()
    if not chunks:
        raise InputError(
            "unlabeled is empty. Pass at least one unlabeled image, or "
            "unlabeled=None for supervised training."
        )
    dtypes = {c.dtype for c in chunks}
    if len(dtypes) > 1:
        chunks = [c.astype("float32") for c in chunks]
    try:
        images = np.concatenate(chunks)
    except ValueError:
        shapes = sorted({c.shape[1:] for c in chunks})
        raise InputError(
            f"The unlabeled {_KIND_NAMES[kind]} yields images of several shapes "
            f"({shapes[:3]}); every image must have the same size. Resize them in the "
            "pipeline (e.g. image_dataset_from_directory(..., image_size=...))."
        ) from None
    return images


def _compact(images):
    """uint8 for 0-255 pixels held as whole numbers (a quarter of float32's memory).

    Only where the range rule reads the floats as 0-255 already: uint8 images
    are always taken as 0-255, so digits' 0-16 floats stay floats.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8 or not np.issubdtype(images.dtype, np.number):
        return images
    if (images.size and np.all(np.isfinite(images)) and images.min() >= 0
            and images.max() <= 255 and np.array_equal(images, np.round(images))
            and checks.infer_value_range(checks.PixelStats(images, "unlabeled"))
            == (0.0, 255.0)):
        return images.astype("uint8")
    return images


def _too_large(nbytes, memory_gb, partial=False, kind=None):
    what = f"more than {nbytes / 2 ** 30:.1f}" if partial else f"{nbytes / 2 ** 30:.1f}"
    source = f" from the {_KIND_NAMES[kind]}" if kind else ""
    return StoreError(
        f"The unlabeled images{source} take {what} GiB, more than the pseudo-label "
        f"table's memory budget of {memory_gb:g} GiB. Raise it "
        "(SemiSupervisedModel(..., unlabeled_memory_gb=...)), use smaller images "
        "(image_size=...) or fewer of them, or choose an algorithm without a table "
        "(keras_ssl.FixMatch) that streams them."
    )


class _progress:
    """A Keras progress bar on a terminal, a line every 10 % otherwise."""

    def __init__(self, total, unit, verbose):
        self.total, self.unit, self.verbose = total, unit, verbose
        self.bar = None
        self.shown = -1
        if verbose and sys.stdout.isatty():
            from keras.utils import Progbar

            self.bar = Progbar(total, unit_name=unit)

    def update(self, count):
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.update(count)
        elif not self.total:
            if count % 100 == 0:
                print(f"reading unlabeled images: {count} {self.unit}", flush=True)
        else:
            tenth = int(10 * count / self.total)
            if tenth > self.shown:
                self.shown = tenth
                print(f"reading unlabeled images: {count}/{self.total} {self.unit}",
                      flush=True)

    def done(self):
        if self.bar is not None and self.total is None:
            self.bar.update(self.bar._seen_so_far, finalize=True)
