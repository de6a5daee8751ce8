"""Folders of image files in: checked, then read by Keras's own loader.

`from_folders` turns a labeled folder (one sub-folder per class) and an
unlabeled folder into the `tf.data` datasets `SemiSupervisedModel.fit` takes,
through `keras.utils.image_dataset_from_directory`. Before that it opens every
file once (its header, with Pillow) so that an empty folder, a class folder
without images, an unreadable file (named) or unlabeled images of another
size or colour mode give an `InputError` before any training, instead of an
error from inside `tf.data` mid-epoch.
"""

import collections
import os

from keras_ssl.checks import InputError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


class FolderScan:
    """What a folder holds: files, their labels, sizes and colour modes.

    Attributes:
        path: the folder.
        files: image files, sorted.
        labels: class index per file (labeled folders), or None.
        class_names: sub-folder names in class-index order, or None.
        sizes: `Counter` of `(height, width)`.
        channels: `Counter` of channel counts (1 grayscale, 3 colour, 4 RGBA).
    """

    def __init__(self, path, files, labels, class_names, sizes, channels):
        self.path, self.files, self.labels = path, files, labels
        self.class_names, self.sizes, self.channels = class_names, sizes, channels

    @property
    def size(self):
        """The most common `(height, width)`."""
        return self.sizes.most_common(1)[0][0]


def _image_files(folder):
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(root, name))
    return sorted(found)


def _header(path):
    """`(height, width, channels)` of an image file; InputError naming it if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:  # verify() leaves the file unusable
            image.load()
            width, height = image.size
            bands = len(image.getbands())
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as error:
        raise InputError(
            f"Cannot read the image file {path!r}: {error}. Remove or replace it, then "
            "run again."
        ) from None
    return height, width, 1 if bands == 1 else (4 if bands == 4 else 3)


def scan(folder, labeled=True):
    """Check a folder and index its images (every file's header is read once).

    Args:
        folder: a folder of images; labeled: one sub-folder per class.
        labeled: whether the folder holds class sub-folders.

    Returns:
        A `FolderScan`.
    """
    folder = os.fspath(folder)
    what = "labeled" if labeled else "unlabeled"
    if not os.path.isdir(folder):
        raise InputError(f"The {what} folder {folder!r} does not exist or is not a folder.")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise InputError(f"The {what} folder {folder!r} cannot be read (permissions).")
    labels, class_names = None, None
    if labeled:
        class_names = sorted(
            name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name))
        )
        if not class_names:
            raise InputError(
                f"The labeled folder {folder!r} has no sub-folders. Put the images of each "
                "class in a sub-folder named after the class (e.g. cats/, dogs/)."
            )
        if len(class_names) < 2:
            raise InputError(
                f"The labeled folder {folder!r} has one class sub-folder "
                f"({class_names[0]!r}); a classifier needs at least two classes."
            )
        files, labels = [], []
        for index, name in enumerate(class_names):
            found = _image_files(os.path.join(folder, name))
            if not found:
                raise InputError(
                    f"The class folder {os.path.join(folder, name)!r} holds no images "
                    f"({', '.join(IMAGE_EXTENSIONS)}). Add images or remove the folder."
                )
            files += found
            labels += [index] * len(found)
    else:
        files = _image_files(folder)
        if not files:
            raise InputError(
                f"The unlabeled folder {folder!r} holds no images "
                f"({', '.join(IMAGE_EXTENSIONS)})."
            )
    sizes, channels = collections.Counter(), collections.Counter()
    for path in files:
        height, width, bands = _header(path)
        sizes[(height, width)] += 1
        channels[bands] += 1
    return FolderScan(folder, files, labels, class_names, sizes, channels)


class Folders:
    """What `from_folders` returns.

    Attributes:
        train, validation: batched labeled `tf.data` datasets of
            `(images, labels)` (validation None without a split), images
            float32 in 0-255.
        unlabeled: batched unlabeled dataset of images, or None.
        class_names: the class names, in label order.
        image_size: `(height, width)` the images were resized to.
        channels: 1 (grayscale) or 3 (RGB).
        labeled_scan, unlabeled_scan: the `FolderScan`s.
        counts: `{"train", "validation", "unlabeled"}` image counts.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)


def from_folders(labeled_dir, unlabeled_dir=None, image_size=None, color_mode="auto",
                 validation_split=0.2, batch_size=32, unlabeled_batch_size=None, seed=0):
    """Labeled and unlabeled folders as datasets for `SemiSupervisedModel.fit`.

    Example:

    ```python
    data = keras_ssl.folders.from_folders("photos/labeled", "photos/unlabeled",
                                          image_size=(96, 96))
    ssl.fit(data.train, unlabeled=data.unlabeled, validation_data=data.validation,
            epochs=20, steps_per_epoch=50)
    ```

    Args:
        labeled_dir: one sub-folder of images per class.
        unlabeled_dir: a folder of images (sub-folders are read too), or None.
        image_size: `(height, width)` (or an int) to resize every image to;
            None keeps the most common size of the labeled images, and then
            requires unlabeled images of that size.
        color_mode: "rgb", "grayscale", or "auto": grayscale when every
            labeled image is, else RGB. Unlabeled images of the other mode
            are refused in "auto" mode.
        validation_split: fraction of the labeled images held out
            (a random fraction, by Keras's shuffle with `seed`); 0 for none.
        batch_size: labeled images per batch.
        unlabeled_batch_size: unlabeled images per batch when reading
            (`fit` rebatches them); default `batch_size`.
        seed: seed of the shuffle and the split.
    """
    labeled = scan(labeled_dir, labeled=True)
    unlabeled = None if unlabeled_dir is None else scan(unlabeled_dir, labeled=False)
    return from_scans(labeled, unlabeled, image_size, color_mode, validation_split,
                      batch_size, unlabeled_batch_size, seed)


def from_scans(labeled, unlabeled=None, image_size=None, color_mode="auto",
               validation_split=0.2, batch_size=32, unlabeled_batch_size=None, seed=0):
    """`from_folders` for folders already scanned (`scan`)."""
    import keras

    if color_mode == "auto":
        grayscale = set(labeled.channels) == {1}
        if unlabeled is not None and (set(unlabeled.channels) == {1}) != grayscale:
            raise InputError(
                f"The labeled images are {'grayscale' if grayscale else 'colour'} but the "
                f"unlabeled images in {unlabeled.path!r} are "
                f"{'colour' if grayscale else 'grayscale'} (channel counts "
                f"{dict(unlabeled.channels)}). Convert one set, or pass color_mode='rgb' "
                "(or --color-mode rgb) to read both as RGB."
            )
        color_mode = "grayscale" if grayscale else "rgb"
    if color_mode not in ("rgb", "grayscale"):
        raise InputError(
            f"color_mode must be 'auto', 'rgb' or 'grayscale'; received {color_mode!r}."
        )
    if image_size is None:
        image_size = labeled.size
        if len(labeled.sizes) > 1 or (unlabeled is not None and set(unlabeled.sizes)
                                      != {image_size}):
            odd = unlabeled.sizes if unlabeled is not None else labeled.sizes
            raise InputError(
                f"The images have several sizes (labeled: {dict(labeled.sizes)}; "
                f"unlabeled: {dict(odd) if unlabeled is not None else 'none'}), so there "
                "is no one size to train at. Pass image_size=(height, width) "
                "(--image-size N) to resize them all."
            )
    elif isinstance(image_size, int):
        image_size = (image_size, image_size)
    image_size = tuple(int(v) for v in image_size)
    counts = {"train": len(labeled.files), "validation": 0}
    common = {"image_size": image_size, "color_mode": color_mode, "seed": seed, "verbose": False}
    if validation_split:
        n_val = int(len(labeled.files) * validation_split)
        if n_val < 1 or n_val >= len(labeled.files):
            raise InputError(
                f"validation_split={validation_split} of {len(labeled.files)} labeled "
                "images leaves no image for training or for validation."
            )
        train, validation = keras.utils.image_dataset_from_directory(
            labeled.path, labels="inferred", class_names=labeled.class_names,
            batch_size=batch_size, validation_split=validation_split, subset="both",
            **common,
        )
        counts.update(train=len(labeled.files) - n_val, validation=n_val)
    else:
        train = keras.utils.image_dataset_from_directory(
            labeled.path, labels="inferred", class_names=labeled.class_names,
            batch_size=batch_size, **common,
        )
        validation = None
    stream = None
    if unlabeled is not None:
        stream = keras.utils.image_dataset_from_directory(
            unlabeled.path, labels=None, batch_size=unlabeled_batch_size or batch_size,
            **common,
        )
        counts["unlabeled"] = len(unlabeled.files)
    return Folders(train=train, validation=validation, unlabeled=stream,
                   class_names=list(labeled.class_names), image_size=image_size,
                   channels=1 if color_mode == "grayscale" else 3, labeled_scan=labeled,
                   unlabeled_scan=unlabeled, counts=counts)
