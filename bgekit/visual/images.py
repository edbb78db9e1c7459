"""Image input for Visualized-BGE with Pillow and numpy only (no torchvision).

The recipe is the reference's evaluation transform (torchvision ``Resize(S, BICUBIC)``, ``CenterCrop(S)``,
``convert('RGB')``, ``ToTensor``, ``Normalize`` with the OpenAI CLIP mean and std), reproduced bit for bit:
the short side is resized to ``S`` (the long side truncated to an int, PIL's antialiased bicubic, or nearest
for palette and 1-bit images as PIL does), the centre crop rounds half to even, and the RGB conversion comes
after the crop, so an RGBA image's fully transparent pixels come out black.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from bgekit.errors import InputError, InputFileError

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def pil():
    """``PIL.Image``, or an ImportError naming the extra that installs Pillow."""
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("images need Pillow: pip install 'bgekit[visual]'") from e
    return Image


def is_image(value: Any) -> bool:
    """True for one image: a path (str or PathLike), a PIL image or a numpy array."""
    return isinstance(value, (str, os.PathLike, np.ndarray, pil().Image))


def check_image(value: Any, where: str) -> None:
    """Fail early, cheaply (a file's header only), for an image that cannot be read; ``where`` names it.

    Raises:
        InputFileError: a path that does not exist or is a folder.
        InputError: a file that is not an image, an array of the wrong shape or type, or another type.
    """
    Image = pil()
    if isinstance(value, Image.Image):
        return
    if isinstance(value, np.ndarray):
        _check_array(value, where)
        return
    if not isinstance(value, (str, os.PathLike)):
        raise InputError(f"{where} must be an image path, a PIL image or a numpy array, got {type(value).__name__}")
    path = os.fspath(value)
    if not os.path.isfile(path):
        raise InputFileError(f"{where}: image file {path!r} does not exist" +
                             (" (it is a folder)" if os.path.isdir(path) else ""))
    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - the header is read by open; size proves it parsed
    except (Image.UnidentifiedImageError, OSError) as e:
        raise InputError(f"{where}: {path!r} is not a readable image ({e})") from None


def _check_array(arr: np.ndarray, where: str) -> None:
    if arr.dtype != np.uint8:
        raise InputError(f"{where}: an image array must be uint8 (0-255), got {arr.dtype}; for floats in [0, 1] "
                         "pass (arr * 255).round().astype('uint8')")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))):
        raise InputError(f"{where}: an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
                         f"got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"{where}: empty image array of shape {arr.shape}")


def open_image(value: Any, where: str = "image"):
    """A PIL image for a path, PIL image or uint8 array (H, W), (H, W, 1/3/4); errors name ``where``."""
    Image = pil()
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, np.ndarray):
        _check_array(value, where)
        return Image.fromarray(value[:, :, 0] if value.ndim == 3 and value.shape[2] == 1 else value)
    check_image(value, where)
    path = os.fspath(value)
    try:
        im = Image.open(path)
        im.load()
    except (Image.UnidentifiedImageError, OSError) as e:
        raise InputError(f"{where}: {path!r} is not a readable image ({e})") from None
    return im


def preprocess(image, size: int) -> np.ndarray:
    """One PIL image -> normalised float32 pixels (3, size, size), exactly as the reference's preprocess_val.

    Example:
        >>> from PIL import Image
        >>> preprocess(Image.new("RGB", (48, 40)), 64).shape
        (3, 64, 64)
    """
    Image = pil()
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new_size = (size, new_long) if w <= h else (new_long, size)
    if new_size != (w, h):  # torchvision returns the image untouched when it already has the size
        image = image.resize(new_size, Image.BICUBIC)
    w, h = image.size
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)  # Python round: half to even, as torchvision
    image = image.crop((left, top, left + size, top + size)).convert("RGB")
    x = np.asarray(image).astype(np.float32).transpose(2, 0, 1) / np.float32(255)  # (3, S, S) in [0, 1]
    return (x - CLIP_MEAN[:, None, None]) / CLIP_STD[:, None, None]


def load_pixels(value: Any, size: int, where: str = "image") -> np.ndarray:
    """Open (path, PIL image or array) and preprocess one image: float32 (3, size, size)."""
    image = open_image(value, where)
    try:
        return preprocess(image, size)
    except (OSError, ValueError) as e:  # a truncated file fails only when its pixels are decoded
        raise InputError(f"{where}: cannot convert the image to RGB pixels ({e})") from None
