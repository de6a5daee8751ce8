"""Folders of image files in: every file accounted for, decoded once, no leakage.

`from_folders` turns a labeled folder (one sub-folder per class) and an
unlabeled folder into what `SemiSupervisedModel.fit` takes:

    scan (every file's header, with Pillow: formats, sizes, colour modes;
          hidden files and folders and non-image files skipped and counted;
          unreadable files listed all at once)
    -> load (decoded with Pillow: EXIF orientation applied, RGBA, CMYK,
             palette and 16-bit images converted, resized; in threads)
    -> labeled images split into training and validation (seeded)
    -> unlabeled images that are also labeled images (same pixels) dropped
    -> `Folders`: numpy arrays and the `tf.data` datasets made from them

Pillow reads PNG, JPEG, BMP, GIF (first frame), WebP and TIFF. An unlabeled
folder that contains the labeled folder is read without it.
"""

import collections
import concurrent.futures
import hashlib
import os

import numpy as np

from keras_ssl.checks import InputError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
# Folders that photo tools, notebooks and operating systems leave beside images.
HIDDEN_FOLDERS = ("@eaDir", "__MACOSX", "$RECYCLE.BIN", "System Volume Information")
FEW_IMAGES = 5  # a class with fewer labeled images gets a warning


class FolderScan:
    """What a folder holds: its image files, their labels, sizes, modes and formats.

    Attributes:
        path: the folder.
        files: image files, sorted.
        labels: class index per file (labeled folders), or None.
        class_names: sub-folder names in class-index order, or None.
        sizes: `Counter` of `(height, width)` (after EXIF orientation).
        channels: `Counter` of channel counts (1 grayscale, 3 colour, 4 with alpha).
        formats: `Counter` of file formats (PNG, JPEG, ...).
        skipped: `{"hidden": [...], "not images": [...]}`: paths left out, and why.
        excluded: a folder inside this one that was not read (the labeled
            folder inside an unlabeled one), or None.
    """

    def __init__(self, path, files, labels, class_names, sizes, channels, formats=None,
                 skipped=None, excluded=None):
        self.path, self.files, self.labels = path, files, labels
        self.class_names, self.sizes, self.channels = class_names, sizes, channels
        self.formats = formats if formats is not None else collections.Counter()
        self.skipped = skipped if skipped is not None else {"hidden": [], "not images": []}
        self.excluded = excluded

    @property
    def size(self):
        """The most common `(height, width)`."""
        return self.sizes.most_common(1)[0][0]

    def per_class(self):
        """`{class name: image count}` (labeled folders)."""
        counts = collections.Counter(self.labels or [])
        return {name: counts[index] for index, name in enumerate(self.class_names or [])}


def _hidden(name):
    return name.startswith((".", "~")) or name in HIDDEN_FOLDERS


def _walk(folder, skipped, exclude=None):
    """Image files under `folder`, sorted; hidden and non-image files go to `skipped`."""
    found = []
    for root, dirs, names in os.walk(folder):
        kept = []
        for name in sorted(dirs):
            path = os.path.join(root, name)
            if _hidden(name):
                skipped["hidden"].append(path)
            elif exclude is not None and os.path.realpath(path) == exclude:
                continue
            else:
                kept.append(name)
        dirs[:] = kept
        for name in names:
            path = os.path.join(root, name)
            if _hidden(name):
                skipped["hidden"].append(path)
            elif name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(path)
            else:
                skipped["not images"].append(path)
    return sorted(found)


# EXIF orientations 5-8 turn the image a quarter: width and height swap.
_TRANSPOSED = {5, 6, 7, 8}
_GRAYSCALE = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _header(path):
    """`(height, width, channels, format)` from the header, or the error's text."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
            if orientation in _TRANSPOSED:
                width, height = height, width
            if image.mode in _GRAYSCALE:
                bands = 1
            elif image.mode in ("RGBA", "PA") or "transparency" in image.info:
                bands = 4
            else:
                bands = 3
            return height, width, bands, image.format or "?"
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as error:
        return str(error) or type(error).__name__


def _unreadable_error(failures):
    shown = "\n".join(f"  {path}: {reason}" for path, reason in failures[:20])
    more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
    return InputError(
        f"{len(failures)} image file(s) cannot be read:\n{shown}{more}\n"
        "Remove or replace them, then run again."
    )


def scan(folder, labeled=True, exclude=None):
    """Check a folder and index its images (every file's header is read once).

    Hidden files and folders (`.name`, `@eaDir`, `__MACOSX`, ...) and files
    that are not images are skipped and listed in `skipped`; every file that
    cannot be read is named in one `InputError`.

    Args:
        folder: a folder of images; labeled: one sub-folder per class.
        labeled: whether the folder holds class sub-folders.
        exclude: a folder inside `folder` not to read (e.g. the labeled
            folder inside an unlabeled one), or None.

    Returns:
        A `FolderScan`.
    """
    folder = os.fspath(folder)
    what = "labeled" if labeled else "unlabeled"
    if not os.path.isdir(folder):
        raise InputError(f"The {what} folder {folder!r} does not exist or is not a folder.")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise InputError(f"The {what} folder {folder!r} cannot be read (permissions).")
    skipped = {"hidden": [], "not images": []}
    exclude = None if exclude is None else os.path.realpath(exclude)
    labels, class_names = None, None
    if labeled:
        class_names = []
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if not os.path.isdir(path):
                continue
            if _hidden(name):
                skipped["hidden"].append(path)
            else:
                class_names.append(name)
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
            found = _walk(os.path.join(folder, name), skipped)
            if not found:
                raise InputError(
                    f"The class folder {os.path.join(folder, name)!r} holds no images "
                    f"({', '.join(IMAGE_EXTENSIONS)}). Add images or remove the folder."
                )
            files += found
            labels += [index] * len(found)
    else:
        files = _walk(folder, skipped, exclude)
        if not files:
            raise InputError(
                f"The unlabeled folder {folder!r} holds no images "
                f"({', '.join(IMAGE_EXTENSIONS)})."
            )
    sizes, channels, formats = (collections.Counter() for _ in range(3))
    failures = []
    for path in files:
        header = _header(path)
        if isinstance(header, str):
            failures.append((path, header))
            continue
        height, width, bands, kind = header
        sizes[(height, width)] += 1
        channels[bands] += 1
        formats[kind] += 1
    if failures:
        raise _unreadable_error(failures)
    return FolderScan(folder, files, labels, class_names, sizes, channels, formats, skipped,
                      exclude)


def load_image(path, image_size, channels=3):
    """One image file as uint8 `(height, width, channels)`: EXIF orientation applied,
    converted to grayscale or RGB (16-bit scaled to 8, alpha dropped), resized."""
    from PIL import Image, ImageOps

    height, width = image_size
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
            wide = np.asarray(image, dtype="float64")
            image = Image.fromarray(np.clip(wide / 257.0, 0, 255).astype("uint8"))
        image = image.convert("L" if channels == 1 else "RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        return np.asarray(image, dtype="uint8").reshape(height, width, channels)


def load_images(paths, image_size, channels=3, workers=None, memory_gb=None,
                progress=None):
    """Every file of `paths` (`load_image`), in threads; one `InputError` names
    every file that fails to decode, another says when they would take more than
    `memory_gb` GiB (None: no limit). `progress(count)`, if given, is called
    as the files are read."""
    paths = list(paths)
    need = len(paths) * int(np.prod(image_size)) * channels
    if memory_gb is not None and need > memory_gb * 2 ** 30:
        raise InputError(
            f"{len(paths)} images of {image_size[0]}x{image_size[1]}x{channels} take "
            f"{need / 2 ** 30:.1f} GiB in memory, more than the {memory_gb:g} GiB allowed. "
            "Pass a smaller image size (--image-size N) or use fewer images."
        )
    out = np.empty((len(paths), *image_size, channels), "uint8")
    failures = []

    def load(index):
        try:
            out[index] = load_image(paths[index], image_size, channels)
        except Exception as error:  # noqa: BLE001 - each failure is named below
            failures.append((paths[index], str(error) or type(error).__name__))

    workers = workers or min(8, (os.cpu_count() or 1) + 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for count, _ in enumerate(pool.map(load, range(len(paths))), 1):
            if progress is not None and (count % 256 == 0 or count == len(paths)):
                progress(count)
    if failures:
        raise _unreadable_error(sorted(failures))
    return out


def _fingerprints(images):
    return [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images]


class Folders:
    """What `from_folders` returns.

    Attributes:
        train, validation: batched labeled `tf.data` datasets of
            `(images, labels)` (validation None without a split), uint8 0-255.
        unlabeled: batched unlabeled dataset of images, or None.
        x_train, y_train, x_val, y_val, unlabeled_images: the same as numpy
            arrays (`x_val`, `y_val`, `unlabeled_images` may be None).
        class_names: the class names, in label order.
        image_size: `(height, width)` the images were resized to.
        channels: 1 (grayscale) or 3 (RGB).
        labeled_scan, unlabeled_scan: the `FolderScan`s.
        counts: `{"train", "validation", "unlabeled"}` image counts.
        duplicates: unlabeled images dropped because a labeled image has
            the same pixels.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def summary(self):
        """What was read and what was left out, in a few lines."""
        scan = self.labeled_scan
        per_class = ", ".join(f"{name} {count}" for name, count in scan.per_class().items())
        lines = [(f"labeled {scan.path}: {len(scan.files)} images in {len(scan.class_names)} "
                 f"classes ({per_class}); {_describe(scan)}")]
        lines.append(f"  training {self.counts['train']}, validation "
                     f"{self.counts['validation']}; images resized to "
                     f"{self.image_size[0]}x{self.image_size[1]}, "
                     f"{'grayscale' if self.channels == 1 else 'RGB'}")
        if self.unlabeled_scan is not None:
            unl = self.unlabeled_scan
            lines.append(f"unlabeled {unl.path}: {len(unl.files)} images; {_describe(unl)}")
            if unl.excluded:
                lines.append(f"  the labeled folder inside it ({unl.excluded}) was not read "
                             "as unlabeled images")
            if self.duplicates:
                lines.append(f"  {self.duplicates} unlabeled images are also labeled images "
                             "(same pixels): left out of the unlabeled set")
        for scan in (self.labeled_scan, self.unlabeled_scan):
            if scan is None:
                continue
            for reason, paths in scan.skipped.items():
                if paths:
                    shown = ", ".join(os.path.relpath(p, scan.path) for p in paths[:5])
                    more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
                    lines.append(f"  skipped in {scan.path} ({reason}): {shown}{more}")
        return "\n".join(lines)

    def warnings(self):
        """Advice about the labeled set: classes with very few images."""
        few = {name: count for name, count in self.labeled_scan.per_class().items()
               if count < FEW_IMAGES}
        if not few:
            return []
        names = ", ".join(f"{name} ({count})" for name, count in few.items())
        return [(f"classes with fewer than {FEW_IMAGES} labeled images: {names}. They will be "
                "learned poorly and may have no validation image; add images if you can.")]


def _describe(scan):
    formats = ", ".join(f"{kind} {count}" for kind, count in scan.formats.most_common())
    sizes = ", ".join(f"{h}x{w} ({count})" for (h, w), count in scan.sizes.most_common(3))
    more = f" and {len(scan.sizes) - 3} more sizes" if len(scan.sizes) > 3 else ""
    return f"formats {formats}; sizes {sizes}{more}"


def from_folders(labeled_dir, unlabeled_dir=None, image_size=None, color_mode="auto",
                 validation_split=0.2, batch_size=32, unlabeled_batch_size=None, seed=0):
    """Labeled and unlabeled folders as data for `SemiSupervisedModel.fit`.

    Example:

    ```python
    data = keras_ssl.folders.from_folders("photos/labeled", "photos/unlabeled",
                                          image_size=(96, 96))
    print(data.summary())
    ssl.fit(data.train, unlabeled=data.unlabeled, validation_data=data.validation,
            epochs=20, steps_per_epoch=50)
    ```

    Args:
        labeled_dir: one sub-folder of images per class.
        unlabeled_dir: a folder of images (sub-folders are read too), or None.
            If it contains `labeled_dir`, that folder is not read as unlabeled.
        image_size: `(height, width)` (or an int) to resize every image to;
            None keeps the most common size of the labeled images, and then
            requires every image to have that size.
        color_mode: "rgb", "grayscale", or "auto": grayscale when every
            labeled image is, else RGB. Unlabeled images of the other mode
            are refused in "auto" mode.
        validation_split: fraction of the labeled images held out (a seeded
            random choice); 0 for none.
        batch_size: labeled images per batch.
        unlabeled_batch_size: unlabeled images per batch of `unlabeled`
            (`fit` rebatches them); default `batch_size`.
        seed: seed of the split.
    """
    labeled = scan(labeled_dir, labeled=True)
    unlabeled = None
    if unlabeled_dir is not None:
        inside = _inside(labeled_dir, unlabeled_dir)
        unlabeled = scan(unlabeled_dir, labeled=False, exclude=labeled_dir if inside else None)
    return from_scans(labeled, unlabeled, image_size, color_mode, validation_split,
                      batch_size, unlabeled_batch_size, seed)


def _inside(inner, outer):
    inner, outer = os.path.realpath(inner), os.path.realpath(outer)
    if inner == outer:
        raise InputError(
            f"The labeled and the unlabeled folder are the same folder ({outer!r}). Put the "
            "unlabeled images in a folder of their own."
        )
    return os.path.commonpath([inner, outer]) == outer


def from_scans(labeled, unlabeled=None, image_size=None, color_mode="auto",
               validation_split=0.2, batch_size=32, unlabeled_batch_size=None, seed=0,
               verbose=0):
    """`from_folders` for folders already scanned (`scan`); `verbose=1` shows
    progress while the unlabeled images are read."""
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
    channels = 1 if color_mode == "grayscale" else 3
    count = len(labeled.files)
    n_val = int(count * validation_split) if validation_split else 0
    if validation_split and (n_val < 1 or n_val >= count):
        raise InputError(
            f"validation_split={validation_split} of {count} labeled images leaves no "
            "image for training or for validation."
        )
    x = load_images(labeled.files, image_size, channels)
    y = np.asarray(labeled.labels, "int64")
    order = np.random.default_rng(seed).permutation(count)
    train, val = np.sort(order[n_val:]), np.sort(order[:n_val])
    x_train, y_train = x[train], y[train]
    x_val, y_val = (x[val], y[val]) if n_val else (None, None)
    images, duplicates = None, 0
    if unlabeled is not None:
        from keras_ssl.data import DEFAULT_MEMORY_GB
        from keras_ssl.data.store import _progress

        progress = _progress(len(unlabeled.files), "files", verbose)
        images = load_images(unlabeled.files, image_size, channels,
                             memory_gb=DEFAULT_MEMORY_GB, progress=progress.update)
        progress.done()
        known = set(_fingerprints(x))
        keep = np.asarray([key not in known for key in _fingerprints(images)], bool)
        duplicates = int((~keep).sum())
        if not keep.any():
            raise InputError(
                f"Every image in the unlabeled folder {unlabeled.path!r} is also a labeled "
                "image; unlabeled images must be other images."
            )
        images = images[keep]
    import tensorflow as tf

    def batches(*arrays, shuffle=False, size=batch_size):
        dataset = tf.data.Dataset.from_tensor_slices(arrays if len(arrays) > 1 else arrays[0])
        if shuffle:
            dataset = dataset.shuffle(len(arrays[0]), seed=seed)
        return dataset.batch(size)

    return Folders(
        train=batches(x_train, y_train, shuffle=True),
        validation=batches(x_val, y_val) if n_val else None,
        unlabeled=None if images is None else batches(
            images, size=unlabeled_batch_size or batch_size),
        x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, unlabeled_images=images,
        class_names=list(labeled.class_names), image_size=image_size, channels=channels,
        labeled_scan=labeled, unlabeled_scan=unlabeled,
        counts={"train": len(x_train), "validation": n_val,
                **({} if images is None else {"unlabeled": len(images)})},
        duplicates=duplicates,
    )
