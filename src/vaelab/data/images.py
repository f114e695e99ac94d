"""A folder of images (PNG, JPEG, BMP), flat or with one sub-folder per class."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import VaelabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def has_images(folder: Path) -> bool:
    """Whether ``folder`` or its sub-folders hold files with an image suffix."""
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*") if p.is_file())


def _listing(folder: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """The image files, their class labels (None for a flat folder) and the class names.

    Hidden files (``.DS_Store``, ...) are skipped; any other file that is not an image, and
    a folder that mixes images with class folders, is an error."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    dirs = [p for p in entries if p.is_dir()]
    files = [p for p in entries if p.is_file()]
    if dirs and files:
        raise VaelabError(
            f"{folder} mixes image files with class folders ({files[0].name}, {dirs[0].name}); "
            "put every image in a class folder, or none"
        )
    if not dirs:
        return _image_files(folder, files), None, []
    paths, labels = [], []
    for label, class_dir in enumerate(dirs):
        inner = sorted(p for p in class_dir.iterdir() if not p.name.startswith("."))
        if any(p.is_dir() for p in inner):
            raise VaelabError(
                f"{class_dir} holds folders; a class folder holds images only (one level)"
            )
        found = _image_files(class_dir, inner)
        paths += found
        labels += [label] * len(found)
    return paths, labels, [d.name for d in dirs]


def _image_files(folder: Path, files: list[Path]) -> list[Path]:
    for path in files:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise VaelabError(
                f"{path} is not an image ({', '.join(IMAGE_SUFFIXES)}); move it out of {folder}"
            )
    return files


def read_image_folder(
    folder: Path, channels: int = 0, image_size: int = 0
) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Every image of ``folder`` as float32 ``(N, C, H, W)`` in [0, 1], class labels ``(N,)``
    (or None), and ``info``: ``label_names`` (label i is the class folder
    ``label_names[i]``) and ``files``, each image's path relative to ``folder``.

    ``channels``: 1 (grayscale), 3 (RGB) or 0 (1 if every image is grayscale, else 3).
    ``image_size``: resize every image to that square side (bilinear); 0 keeps the sizes,
    which must then all be equal. Sub-folders are classes, labelled in sorted order.
    """
    from PIL import Image, UnidentifiedImageError

    paths, labels, label_names = _listing(folder)
    images = []
    for path in paths:
        try:
            with warnings.catch_warnings():  # Pillow's guard against decompression bombs
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    image.load()
                    images.append(image.copy())
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise VaelabError(
                f"image {path} is too large to read safely ({exc}); resize it first"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise VaelabError(f"cannot read image {path}: {exc}; remove or replace it") from None
    if channels == 0:
        channels = 1 if all(im.mode in ("1", "L", "LA", "I", "I;16", "F") for im in images) else 3
    sizes = {im.size for im in images}
    if not image_size and len(sizes) > 1:
        first = images[0].size
        other = next(i for i, im in enumerate(images) if im.size != first)
        raise VaelabError(
            f"images in {folder} differ in size ({first[0]}x{first[1]} in {paths[0].name}, "
            f"{images[other].size[0]}x{images[other].size[1]} in {paths[other].name}); "
            "pass --image-size N to resize all to NxN"
        )
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for image in images:
        image = image.convert(mode)
        if image_size:
            image = image.resize((image_size, image_size), Image.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
        arrays.append(array[None] if channels == 1 else array.transpose(2, 0, 1))
    x = np.stack(arrays)
    y = None if labels is None else np.asarray(labels, dtype=np.int64)
    files = [path.relative_to(folder).as_posix() for path in paths]
    return x, y, {"label_names": label_names, "files": files}
